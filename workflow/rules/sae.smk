rule sae:
    input:
        tokens=f"{R}/{{model}}/tokens.parquet",
        reference=f"{R}/{{model}}/reference",
    output:
        directory(f"{R}/{{model}}/sae"),
    log:
        "logs/{model}/sae.log",
    params:
        model=model_params,
        sae=sae_params,
        code=library_code("sae", "sae_pretrained", "capture"),
    threads: HEAVY_THREADS
    resources:
        mem_mb=mem_mb("train_sae"),
        runtime=runtime("train_sae"),
        gpu=gpus,
    conda:
        ENV
    script:
        "../scripts/sae.py"
