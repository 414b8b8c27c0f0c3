rule fp_statistics:
    input:
        codes=f"{R}/{{model}}/codes/fp.parquet",
        sae=f"{R}/{{model}}/sae",
    output:
        f"{R}/{{model}}/fp_statistics.parquet",
    log:
        "logs/{model}/fp_statistics.log",
    params:
        code=library_code("statistics", "codes"),
    conda:
        ENV
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
    params:
        thresholds=config.get("survival", {}),
        code=library_code("survival", "codes"),
    conda:
        ENV
    script:
        "../scripts/survival.py"


rule predictability:
    input:
        f"{R}/{{model}}/survival/{{variant}}.parquet",
    output:
        f"{R}/{{model}}/predictability/{{variant}}.json",
    log:
        "logs/{model}/predictability/{variant}.log",
    params:
        settings=config.get("predictability", {}),
        code=library_code("predict", "statistics"),
    conda:
        ENV
    script:
        "../scripts/predictability.py"
