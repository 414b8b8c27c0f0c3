rule fp_statistics:
    input:
        codes=f"{R}/{{model}}/codes/fp.parquet",
        sae=f"{R}/{{model}}/sae",
    output:
        f"{R}/{{model}}/fp_statistics.parquet",
    log:
        "logs/{model}/fp_statistics.log",
    conda:
        ENV
    params:
        code=script_code("fp_statistics"),
    script:
        "../scripts/fp_statistics.py"


rule survival:
    input:
        fp=f"{R}/{{model}}/codes/fp.parquet",
        variant=f"{R}/{{model}}/codes/{{variant}}.parquet",
        statistics=f"{R}/{{model}}/fp_statistics.parquet",
    output:
        f"{R}/{{model}}/survival/{{variant}}.parquet",
    log:
        "logs/{model}/survival/{variant}.log",
    conda:
        ENV
    params:
        thresholds=as_params(CFG.survival),
        code=script_code("survival"),
    script:
        "../scripts/survival.py"


rule predictability:
    input:
        f"{R}/{{model}}/survival/{{variant}}.parquet",
    output:
        f"{R}/{{model}}/predictability/{{variant}}.json",
    log:
        "logs/{model}/predictability/{variant}.log",
    conda:
        ENV
    params:
        settings=as_params(CFG.predictability),
        code=script_code("predictability"),
    script:
        "../scripts/predictability.py"
