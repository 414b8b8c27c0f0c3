rule fp_statistics:
    input:
        codes=f"{R}/{{model}}/codes/fp.parquet",
        sae=f"{R}/{{model}}/sae",
        tokens=f"{R}/{{model}}/tokens.parquet",
    output:
        statistics=f"{R}/{{model}}/fp_statistics.parquet",
        blocks=f"{R}/{{model}}/fp_blocks.npz",
        contexts=f"{R}/{{model}}/contexts.parquet",
    log:
        "logs/{model}/fp_statistics.log",
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
        fp=f"{R}/{{model}}/codes/fp.parquet",
        variant=f"{R}/{{model}}/codes/{{variant}}.parquet",
        statistics=f"{R}/{{model}}/fp_statistics.parquet",
        tokens=f"{R}/{{model}}/tokens.parquet",
        contexts=f"{R}/{{model}}/contexts.parquet",
    output:
        table=f"{R}/{{model}}/survival/{{variant}}.parquet",
        replicates=f"{R}/{{model}}/bootstrap/{{variant}}.npz",
        evidence=f"{R}/{{model}}/evidence/{{variant}}.parquet",
    log:
        "logs/{model}/survival/{variant}.log",
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
        survival=f"{R}/{{model}}/survival/{{variant}}.parquet",
        replicates=f"{R}/{{model}}/bootstrap/{{variant}}.npz",
        blocks=f"{R}/{{model}}/fp_blocks.npz",
    output:
        auc=f"{R}/{{model}}/predictability/{{variant}}.json",
        risk=f"{R}/{{model}}/predictability/{{variant}}.risk.parquet",
    log:
        "logs/{model}/predictability/{variant}.log",
    conda:
        ENV
    params:
        settings=as_params(CFG.predictability),
        uncertainty=as_params(CFG.uncertainty),
        code=script_code("predictability"),
    script:
        "../scripts/predictability.py"
