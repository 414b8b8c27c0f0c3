rule write_checkpoint:
    input:
        reference=get_reference_file,
    output:
        f"{R}/{{model}}/checkpoints/{{ckpt}}.gguf",
    log:
        "logs/{model}/checkpoints/{ckpt}.log",
    conda:
        ENV
    params:
        mix=get_mix,
        code=script_code("write_checkpoint"),
    script:
        "../scripts/write_checkpoint.py"


rule capture:
    input:
        tokens=f"{R}/{{model}}/tokens.parquet",
        reference=f"{R}/{{model}}/reference",
        sae=f"{R}/{{model}}/sae",
        matched=get_matched_json,
        checkpoint=get_checkpoint,
    output:
        directory(f"{R}/{{model}}/activations/{{variant}}"),
    log:
        "logs/{model}/capture/{variant}.log",
    conda:
        ENV
    threads: HEAVY_THREADS
    resources:
        mem_mb=mem_mb("capture"),
        runtime=runtime("capture"),
        gpu=gpus,
    params:
        run=get_run,
        capture=get_capture_settings,
        pruning_scope=CFG.pruning.scope,
        code=script_code("capture"),
    script:
        "../scripts/capture.py"


rule encode:
    input:
        sae=f"{R}/{{model}}/sae",
        activations=f"{R}/{{model}}/activations/{{variant}}",
    output:
        f"{R}/{{model}}/codes/{{variant}}.parquet",
    log:
        "logs/{model}/encode/{variant}.log",
    conda:
        ENV
    threads: HEAVY_THREADS
    resources:
        mem_mb=mem_mb("encode"),
        runtime=runtime("encode"),
        gpu=gpus,
    params:
        device=CFG.device,
        code=script_code("encode"),
    script:
        "../scripts/encode.py"
