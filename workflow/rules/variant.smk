rule write_checkpoint:
    input:
        reference=get_reference_file,
    output:
        f"{R}/{{model}}/checkpoints/{{ckpt}}.gguf",
    log:
        "logs/{model}/checkpoints/{ckpt}.log",
    wildcard_constraints:
        ckpt=producer_keys("gguf-py"),
    conda:
        ENV
    params:
        mix=get_mix,
        code=script_code("write_checkpoint"),
    script:
        "../scripts/write_checkpoint.py"


# The FP model's final hidden states on the tokens the task metrics score, once per corpus (the
# main corpus's held-out split; a further corpus's audit tokens): every variant's metrics rebuild
# the FP logits from them (one matrix product) instead of running FP again.
rule fp_heldout:
    input:
        tokens=f"{C}/tokens.parquet",
        reference=f"{R}/{{model}}/reference",
    output:
        f"{C}/fp_heldout.safetensors",
    log:
        "logs/{model}{corpus_dir}/fp_heldout.log",
    conda:
        ENV
    threads: HEAVY_THREADS
    resources:
        mem_mb=mem_mb("fp_heldout"),
        runtime=runtime("fp_heldout"),
        gpu=gpus,
    params:
        run=get_run,
        batch_size=CFG.evaluation.batch_size,
        split=lambda wildcards: "audit" if wildcards.corpus_dir else "heldout",
        code=script_code("fp_heldout"),
    script:
        "../scripts/fp_heldout.py"


# One variant on one corpus, built once: activations at every hook from one forward, their codes
# (each hook's own SAE), its task metrics. A variant that may come out identical to FP
# (weight-only compression) also takes fp's outputs, to reuse them when it does. One job per
# corpus, not all corpora in one: a corpus added to a finished run then plans only its own jobs.
rule variant:
    input:
        tokens=f"{C}/tokens.parquet",
        reference=f"{R}/{{model}}/reference",
        saes=get_saes,
        fp_heldout=f"{C}/fp_heldout.safetensors",
        matched=get_matched_json,
        checkpoint=get_checkpoint,
        fp_activations=get_fp_output("activations"),
        fp_codes=get_fp_output("codes"),
        fp_metrics=get_fp_output("metrics"),
    output:
        activations=directory(f"{C}/activations/{{variant}}"),
        codes=directory(f"{C}/codes/{{variant}}"),
        metrics=f"{C}/metrics/{{variant}}.json",
    log:
        "logs/{model}{corpus_dir}/variant/{variant}.log",
    conda:
        ENV
    threads: HEAVY_THREADS
    resources:
        mem_mb=mem_mb("variant"),
        runtime=runtime("variant"),
        gpu=gpus,
    params:
        run=get_run,
        captures=get_captures,
        evaluation=as_params(CFG.evaluation),
        prepend_bos=CFG.corpus.prepend_bos,
        pruning_scope=CFG.pruning.scope,
        code=script_code("variant"),
    script:
        "../scripts/variant.py"
