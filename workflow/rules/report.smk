# The summary (one row per variant and hook), the figures of each hook, the depth figure across
# hooks, and each hook's feature browser.
rule summary:
    input:
        survival=get_survival_all,
        metrics=get_metrics_all,
        predictability=get_predictability_all,
        replicates=get_replicates_all,
        overlap=get_overlap_all,
        causal=get_causal_all,
        runtime=get_runtime_all,
    output:
        report(
            f"{R}/{{model}}/summary.csv",
            caption="../report/summary.rst",
            category="Summary",
        ),
    log:
        "logs/{model}/summary.log",
    conda:
        ENV
    params:
        variants=get_variants,
        hooks=get_hooks,
        uncertainty=as_params(CFG.uncertainty),
        gate=as_params(CFG.gate),
        methods=get_methods,
        code=script_code("summary"),
    script:
        "../scripts/summary.py"


rule figures:
    input:
        summary=f"{R}/{{model}}/summary.csv",
        survival=get_survival_all,
        predictability=get_predictability_all,
        overlap=get_overlap_all,
        causal=get_causal_tables,
    output:
        **{name: figure(name) for name in FIGURES},
    log:
        "logs/{model}/{hook}/figures.log",
    conda:
        ENV
    params:
        variants=get_variants,
        quantized=QUANTIZED,
        thresholds=as_params(CFG.survival),  # the captions say which settings the figures used
        gate=as_params(CFG.gate),
        uncertainty=as_params(CFG.uncertainty),
        causal_variants=lambda wildcards: CFG.causal_variants(wildcards.model),
        code=script_code("figures"),
    script:
        "../scripts/figures.py"


# Survived and damaged fractions against depth, per variant: where each format starts to lose
# features (one point per hook; a model with one hook gets a single column of points).
rule depth_figure:
    input:
        summary=f"{R}/{{model}}/summary.csv",
    output:
        **{DEPTH_FIGURE: figure(DEPTH_FIGURE, per_hook=False)},
    log:
        "logs/{model}/depth_figure.log",
    conda:
        ENV
    params:
        code=script_code("depth_figure"),
    script:
        "../scripts/depth_figure.py"


rule browser:
    input:
        survival=get_survival_all,
        risk=get_risk_all,
        evidence=get_evidence_all,
        contexts=f"{H}/contexts.parquet",
        summary=f"{R}/{{model}}/summary.csv",
        causal=get_causal_tables,
    output:
        report(
            f"{H}/browser.html",
            caption="../report/browser.rst",
            category="Feature browser",
        ),
    log:
        "logs/{model}/{hook}/browser.log",
    conda:
        ENV
    params:
        variants=get_variants,
        hooks=get_hooks,
        source=get_source,
        thresholds=as_params(CFG.survival),
        causal_variants=lambda wildcards: CFG.causal_variants(wildcards.model),
        code=script_code("browser"),
    script:
        "../scripts/browser.py"
