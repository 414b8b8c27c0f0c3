rule tokens:
    output:
        f"{R}/{{model}}/tokens.parquet",
    log:
        "logs/{model}/tokens.log",
    params:
        model=model_params,
        corpus=corpus_params,
        code=library_code("tokens", "models"),
    conda:
        ENV
    script:
        "../scripts/tokens.py"


rule reference_model:
    output:
        directory(f"{R}/{{model}}/reference"),
    log:
        "logs/{model}/reference.log",
    params:
        model=model_params,
        code=library_code("models"),
    conda:
        ENV
    script:
        "../scripts/reference_model.py"
