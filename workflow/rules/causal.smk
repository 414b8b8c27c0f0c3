# Causal fidelity at each SAE's hook (featureaudit/measure/causal.py): FP's side once per hook, then
# one job per hook and variant in causal.variants that compares its effects with FP's.


rule fp_causal:
    input:
        unpack(get_fp_causal_inputs),
    output:
        npz=f"{H}/causal/fp.npz",
        json=f"{H}/causal/fp.json",
    log:
        "logs/{model}/{hook}/causal/fp.log",
    conda:
        ENV
    threads: HEAVY_THREADS
    resources:
        mem_mb=mem_mb("variant"),
        runtime=runtime("variant"),
        gpu=gpus,
    params:
        run=get_run,
        capture=get_capture_settings,
        causal=CAUSAL,
        code=script_code("fp_causal"),
    script:
        "../scripts/fp_causal.py"


rule causal:
    input:
        tokens=f"{R}/{{model}}/tokens.parquet",
        reference=f"{R}/{{model}}/reference",
        sae=f"{H}/sae",
        fp_npz=f"{H}/causal/fp.npz",
        fp_json=f"{H}/causal/fp.json",
        survival=f"{H}/survival/{{variant}}.parquet",
        matched=get_matched_json,
        checkpoint=get_checkpoint,
    output:
        table=f"{H}/causal/{{variant}}.parquet",
        json=f"{H}/causal/{{variant}}.json",
    log:
        "logs/{model}/{hook}/causal/{variant}.log",
    conda:
        ENV
    threads: HEAVY_THREADS
    resources:
        mem_mb=mem_mb("variant"),
        runtime=runtime("variant"),
        gpu=gpus,
    params:
        run=get_run,
        capture=get_capture_settings,
        causal=CAUSAL,
        thresholds=as_params(CFG.survival),
        level=CFG.uncertainty.level,
        pruning_scope=CFG.pruning.scope,
        code=script_code("causal"),
    script:
        "../scripts/causal.py"
