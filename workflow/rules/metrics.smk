rule metrics:
    input:
        tokens=f"{R}/{{model}}/tokens.parquet",
        reference=f"{R}/{{model}}/reference",
        matched=get_matched_json,
    output:
        f"{R}/{{model}}/metrics/{{variant}}.json",
    log:
        "logs/{model}/metrics/{variant}.log",
    params:
        model=model_params,
        evaluation=config.get("evaluation", {}),
        scope=CFG.pruning.scope,
        code=library_code("metrics", "compression", "architecture", "models"),
    threads: HEAVY_THREADS
    resources:
        mem_mb=mem_mb("metrics"),
        runtime=runtime("metrics"),
        gpu=gpus,
    conda:
        ENV
    script:
        "../scripts/metrics.py"


rule match_pruning:
    input:
        tokens=f"{R}/{{model}}/tokens.parquet",
        reference=f"{R}/{{model}}/reference",
    output:
        f"{R}/{{model}}/matched/{{quantized}}.json",
    log:
        "logs/{model}/matched/{quantized}.log",
    params:
        model=model_params,
        pruning=config.get("pruning", {}),
        code=library_code("overlap", "metrics", "compression", "architecture", "models"),
    threads: HEAVY_THREADS
    resources:
        mem_mb=mem_mb("match_pruning"),
        runtime=runtime("match_pruning"),
        gpu=gpus,
    conda:
        ENV
    script:
        "../scripts/match_pruning.py"
