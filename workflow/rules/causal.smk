# Causal fidelity at the SAE's hook (featureaudit/measure/causal.py): FP's side once per model, then one
# job per variant in causal.variants that compares its effects with FP's.


rule fp_causal:
    input:
        unpack(get_fp_causal_inputs),
    output:
        npz=f"{R}/{{model}}/causal/fp.npz",
        json=f"{R}/{{model}}/causal/fp.json",
    log:
        "logs/{model}/causal/fp.log",
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
        sae=f"{R}/{{model}}/sae",
        fp_npz=f"{R}/{{model}}/causal/fp.npz",
        fp_json=f"{R}/{{model}}/causal/fp.json",
        survival=f"{R}/{{model}}/survival/{{variant}}.parquet",
        matched=get_matched_json,
        checkpoint=get_checkpoint,
    output:
        table=f"{R}/{{model}}/causal/{{variant}}.parquet",
        json=f"{R}/{{model}}/causal/{{variant}}.json",
    log:
        "logs/{model}/causal/{variant}.log",
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
