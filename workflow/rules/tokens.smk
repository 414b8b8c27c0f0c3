rule tokens:
    output:
        f"{R}/{{model}}/tokens.parquet",
    log:
        "logs/{model}/tokens.log",
    conda:
        ENV
    params:
        source=get_source,
        corpus=MAIN_CORPUS,
        budget=get_token_budget,
        code=script_code("tokens"),
    script:
        "../scripts/tokens.py"


# A further audit corpus: audit tokens only, none of them a sequence of an earlier token table.
rule corpus_tokens:
    input:
        taken=get_taken_tokens,
    output:
        f"{R}/{{model}}/corpora/{{corpus}}/tokens.parquet",
    log:
        "logs/{model}/corpora/{corpus}/tokens.log",
    conda:
        ENV
    params:
        source=get_source,
        corpus=extra_corpus_params,
        context_length=CFG.corpus.context_length,
        prepend_bos=CFG.corpus.prepend_bos,
        code=script_code("corpus_tokens"),
    script:
        "../scripts/corpus_tokens.py"


rule reference_model:
    output:
        directory(f"{R}/{{model}}/reference"),
    log:
        "logs/{model}/reference.log",
    conda:
        ENV
    params:
        source=get_source,
        code=script_code("reference_model"),
    script:
        "../scripts/reference_model.py"
