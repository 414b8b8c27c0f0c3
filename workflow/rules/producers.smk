# Producers: checkpoints made from the reference by the tools people ship with. Each writes
# results/<model>/checkpoints/<key>[.gguf], which the `variant` rule then audits like a file of
# the user's (ckpt-<key>); adding a recipe runs only its own jobs.


# Calibration tokens, disjoint from every split of tokens.parquet (featureaudit/inputs/calibration.py).
rule calibration_tokens:
    output:
        f"{R}/{{model}}/calibration.parquet",
    log:
        "logs/{model}/calibration_tokens.log",
    conda:
        ENV
    params:
        source=get_source,
        corpus=as_params(CFG.corpus),
        budget=get_token_budget,
        n_tokens=CFG.calibration.n_tokens,
        code=script_code("calibration_tokens"),
    script:
        "../scripts/calibration_tokens.py"


# llama.cpp: the reference as F32 GGUF (what llama-quantize starts from), an importance matrix
# on the calibration tokens, each preset.
rule reference_gguf:
    input:
        reference=get_reference_file,
    output:
        f"{R}/{{model}}/llama_cpp/reference.f32.gguf",
    log:
        "logs/{model}/llama_cpp/reference_gguf.log",
    conda:
        ENV
    params:
        code=script_code("reference_gguf"),
    script:
        "../scripts/reference_gguf.py"


rule imatrix:
    input:
        gguf=f"{R}/{{model}}/llama_cpp/reference.f32.gguf",
        calibration=f"{R}/{{model}}/calibration.parquet",
    output:
        f"{R}/{{model}}/llama_cpp/imatrix.gguf",
    log:
        "logs/{model}/llama_cpp/imatrix.log",
    conda:
        ENV
    threads: ALL_THREADS
    params:
        source=get_source,
        code=script_code("imatrix"),
    script:
        "../scripts/imatrix.py"


rule llama_quantize:
    input:
        gguf=f"{R}/{{model}}/llama_cpp/reference.f32.gguf",
        imatrix=get_imatrix,
        recipe=get_recipe,
    output:
        f"{R}/{{model}}/checkpoints/{{ckpt}}.gguf",
    log:
        "logs/{model}/checkpoints/{ckpt}.log",
    wildcard_constraints:
        ckpt=producer_keys("llama.cpp"),
    conda:
        ENV
    threads: HEAVY_THREADS
    params:
        quantize=get_quantize_settings,
        code=script_code("llama_quantize"),
    script:
        "../scripts/llama_quantize.py"


# llm-compressor in its own environment: conda's with --sdm conda, else the venv that
# `make llm-compressor` builds (LLM_COMPRESSOR_PYTHON says which interpreter runs).
rule llm_compress:
    input:
        reference=f"{R}/{{model}}/reference",
        calibration=f"{R}/{{model}}/calibration.parquet",
    output:
        directory(f"{R}/{{model}}/checkpoints/{{ckpt}}"),
    log:
        "logs/{model}/checkpoints/{ckpt}.log",
    wildcard_constraints:
        ckpt=producer_keys("llm-compressor"),
    conda:
        "../../envs/llm-compressor.yaml"
    threads: HEAVY_THREADS
    resources:
        mem_mb=mem_mb("variant"),
        runtime=runtime("variant"),
        gpu=gpus,
    params:
        recipe=lambda wc: CFG.models[wc.model].checkpoints[wc.ckpt].llm_compressor,
        group_size=lambda wc: CFG.models[wc.model].checkpoints[wc.ckpt].group_size,
        python=LLM_COMPRESSOR_PYTHON,
        environment=LLM_COMPRESSOR_ENVIRONMENT,
        root=workflow.basedir,
        code=module_code("compress.llm_compress"),
    shell:
        "echo 'llm-compressor environment: {params.environment}' > {log:q}; "
        "PYTHONPATH={params.root:q} OMP_NUM_THREADS={threads} TQDM_MININTERVAL=15 {params.python} -m featureaudit.compress.llm_compress "
        "{input.reference:q} {input.calibration:q} {params.recipe} {params.group_size} {output:q} >> {log:q} 2>&1"


# The runtime's own activations: a GGUF variant (and fp as F32 GGUF) through llama.cpp.
rule runtime:
    input:
        gguf=get_runtime_gguf,
        tokens=f"{R}/{{model}}/tokens.parquet",
        saes=get_saes,
        activations=f"{R}/{{model}}/activations/{{variant}}",
        fp_codes=f"{R}/{{model}}/codes/fp",
        variant_codes=f"{R}/{{model}}/codes/{{variant}}",
    output:
        f"{R}/{{model}}/runtime/{{variant}}.json",
    log:
        "logs/{model}/runtime/{variant}.log",
    conda:
        ENV
    threads: HEAVY_THREADS
    resources:
        mem_mb=mem_mb("variant"),
        runtime=runtime("variant"),
    params:
        captures=get_captures,
        thresholds=as_params(CFG.survival),
        n_tokens=CFG.runtime.n_tokens,
        code=script_code("runtime"),
    script:
        "../scripts/runtime.py"
