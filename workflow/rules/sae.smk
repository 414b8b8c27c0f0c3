# The frozen SAE of each hook: trained once on FP activations at that hook, or read from disk or
# SAELens's pretrained releases.
rule sae:
    input:
        tokens=f"{R}/{{model}}/tokens.parquet",
        reference=f"{R}/{{model}}/reference",
    output:
        directory(f"{H}/sae"),
    log:
        "logs/{model}/{hook}/sae.log",
    priority: 10
    conda:
        ENV
    threads: ALL_THREADS
    resources:
        mem_mb=mem_mb("train_sae"),
        runtime=runtime("train_sae"),
        gpu=gpus,
    params:
        run=get_run,
        capture=get_capture_settings,
        sae=get_sae_settings,
        context_length=CFG.corpus.context_length,
        code=script_code("sae"),
    script:
        "../scripts/sae.py"
