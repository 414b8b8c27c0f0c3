# Per hook: FP's statistics once, then every variant's survival and predictability against it.
rule fp_statistics:
    input:
        codes=f"{R}/{{model}}/codes/fp",
        sae=f"{H}/sae",
        tokens=f"{R}/{{model}}/tokens.parquet",
    output:
        statistics=f"{H}/fp_statistics.parquet",
        blocks=f"{H}/fp_blocks.npz",
        contexts=f"{H}/contexts.parquet",
    log:
        "logs/{model}/{hook}/fp_statistics.log",
    conda:
        ENV
    params:
        uncertainty=as_params(CFG.uncertainty),
        evidence=as_params(CFG.evidence),
        code=script_code("fp_statistics"),
    script:
        "../scripts/fp_statistics.py"


rule survival:
    input:
        fp=f"{R}/{{model}}/codes/fp",
        variant=f"{R}/{{model}}/codes/{{variant}}",
        statistics=f"{H}/fp_statistics.parquet",
        tokens=f"{R}/{{model}}/tokens.parquet",
        contexts=f"{H}/contexts.parquet",
    output:
        table=f"{H}/survival/{{variant}}.parquet",
        replicates=f"{H}/bootstrap/{{variant}}.npz",
        evidence=f"{H}/evidence/{{variant}}.parquet",
    log:
        "logs/{model}/{hook}/survival/{variant}.log",
    conda:
        ENV
    params:
        thresholds=as_params(CFG.survival),
        uncertainty=as_params(CFG.uncertainty),
        code=script_code("survival"),
    script:
        "../scripts/survival.py"


rule predictability:
    input:
        survival=f"{H}/survival/{{variant}}.parquet",
        replicates=f"{H}/bootstrap/{{variant}}.npz",
        blocks=f"{H}/fp_blocks.npz",
    output:
        auc=f"{H}/predictability/{{variant}}.json",
        risk=f"{H}/predictability/{{variant}}.risk.parquet",
    log:
        "logs/{model}/{hook}/predictability/{variant}.log",
    conda:
        ENV
    params:
        settings=as_params(CFG.predictability),
        uncertainty=as_params(CFG.uncertainty),
        code=script_code("predictability"),
    script:
        "../scripts/predictability.py"
