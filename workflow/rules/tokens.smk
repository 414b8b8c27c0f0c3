rule tokens:
    output:
        f"{R}/{{model}}/tokens.parquet",
    log:
        "logs/{model}/tokens.log",
    conda:
        ENV
    params:
        source=get_source,
        corpus=as_params(CFG.corpus),
        budget=get_token_budget,
        code=script_code("tokens"),
    script:
        "../scripts/tokens.py"


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
