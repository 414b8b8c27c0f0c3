rule overlap:
    input:
        quantized=f"{R}/{{model}}/survival/{{quantized}}.parquet",
        pruned=f"{R}/{{model}}/survival/match-{{quantized}}.parquet",
        matched=f"{R}/{{model}}/matched/{{quantized}}.json",
    output:
        f"{R}/{{model}}/overlap/{{quantized}}.json",
    log:
        "logs/{model}/overlap/{quantized}.log",
    params:
        code=library_code("overlap"),
    conda:
        ENV
    script:
        "../scripts/overlap.py"
