# The pruned model's perplexity at a fixed grid of sparsities, once per model: every matched
# search starts inside the bracket it gives (adding a bit-width adds one short search).
rule pruning_curve:
    input:
        tokens=f"{R}/{{model}}/tokens.parquet",
        reference=f"{R}/{{model}}/reference",
    output:
        f"{R}/{{model}}/matched/curve.json",
    log:
        "logs/{model}/matched/curve.log",
    conda:
        ENV
    threads: HEAVY_THREADS
    resources:
        mem_mb=mem_mb("pruning_curve"),
        runtime=runtime("pruning_curve"),
        gpu=gpus,
    params:
        run=get_run,
        curve=as_params(CFG.pruning.curve()),
        batch_size=CFG.evaluation.batch_size,
        code=script_code("pruning_curve"),
    script:
        "../scripts/pruning_curve.py"


# Independent of the quantized variant's own job (it computes the target perplexity itself), so
# that matched variants are not left for the end of a run.
rule match_pruning:
    input:
        tokens=f"{R}/{{model}}/tokens.parquet",
        reference=f"{R}/{{model}}/reference",
        curve=f"{R}/{{model}}/matched/curve.json",
    output:
        f"{R}/{{model}}/matched/{{quantized}}.json",
    log:
        "logs/{model}/matched/{quantized}.log",
    conda:
        ENV
    threads: HEAVY_THREADS
    resources:
        mem_mb=mem_mb("match_pruning"),
        runtime=runtime("match_pruning"),
        gpu=gpus,
    params:
        run=get_run,
        search=as_params(CFG.pruning.search()),
        batch_size=CFG.evaluation.batch_size,
        code=script_code("match_pruning"),
    script:
        "../scripts/match_pruning.py"


rule overlap:
    input:
        quantized=f"{H}/survival/{{quantized}}.parquet",
        pruned=f"{H}/survival/match-{{quantized}}.parquet",
        matched=f"{R}/{{model}}/matched/{{quantized}}.json",
        quantized_replicates=f"{H}/bootstrap/{{quantized}}.npz",
        pruned_replicates=f"{H}/bootstrap/match-{{quantized}}.npz",
    output:
        f"{H}/overlap/{{quantized}}.json",
    log:
        "logs/{model}/{hook}/overlap/{quantized}.log",
    conda:
        ENV
    params:
        uncertainty=as_params(CFG.uncertainty),
        code=script_code("overlap"),
    script:
        "../scripts/overlap.py"


# Every pair of methods: do two tools damage the same features? (featureaudit/measure/method_overlap.py)
rule method_overlap:
    input:
        survival=get_survival_all,
        replicates=get_replicates_all,
    output:
        report(
            f"{H}/method_overlap.csv",
            caption="../report/method_overlap.rst",
            category="Summary",
        ),
    log:
        "logs/{model}/{hook}/method_overlap.log",
    conda:
        ENV
    params:
        variants=get_variants,
        methods=get_methods,
        uncertainty=as_params(CFG.uncertainty),
        code=script_code("method_overlap"),
    script:
        "../scripts/method_overlap.py"
