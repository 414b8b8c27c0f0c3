rule metrics:
    input:
        tokens=f"{R}/{{model}}/tokens.parquet",
        reference=f"{R}/{{model}}/reference",
        matched=get_matched_json,
        checkpoint=get_checkpoint,
    output:
        f"{R}/{{model}}/metrics/{{variant}}.json",
    log:
        "logs/{model}/metrics/{variant}.log",
    conda:
        ENV
    threads: HEAVY_THREADS
    resources:
        mem_mb=mem_mb("metrics"),
        runtime=runtime("metrics"),
        gpu=gpus,
    params:
        run=get_run,
        evaluation=as_params(CFG.evaluation),
        prepend_bos=CFG.corpus.prepend_bos,
        pruning_scope=CFG.pruning.scope,
        code=script_code("metrics"),
    script:
        "../scripts/metrics.py"
