rule match_pruning:
    input:
        tokens=f"{R}/{{model}}/tokens.parquet",
        reference=f"{R}/{{model}}/reference",
    output:
        f"{R}/{{model}}/matched/{{quantized}}.json",
    log:
        "logs/{model}/matched/{quantized}.log",
    params:
        run=get_run,
        search=as_params(CFG.pruning.search()),
        batch_size=CFG.evaluation.batch_size,
        code=script_code("match_pruning"),
    threads: HEAVY_THREADS
    resources:
        mem_mb=mem_mb("match_pruning"),
        runtime=runtime("match_pruning"),
        gpu=gpus,
    conda:
        ENV
    script:
        "../scripts/match_pruning.py"


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
        code=script_code("overlap"),
    conda:
        ENV
    script:
        "../scripts/overlap.py"
