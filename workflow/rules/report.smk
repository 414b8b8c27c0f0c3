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
        "logs/{model}/figures.log",
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


rule browser:
    input:
        survival=get_survival_all,
        risk=get_risk_all,
        evidence=get_evidence_all,
        contexts=f"{R}/{{model}}/contexts.parquet",
        summary=f"{R}/{{model}}/summary.csv",
        causal=get_causal_tables,
    output:
        report(
            f"{R}/{{model}}/browser.html",
            caption="../report/browser.rst",
            category="Feature browser",
        ),
    log:
        "logs/{model}/browser.log",
    conda:
        ENV
    params:
        variants=get_variants,
        source=get_source,
        thresholds=as_params(CFG.survival),
        causal_variants=lambda wildcards: CFG.causal_variants(wildcards.model),
        code=script_code("browser"),
    script:
        "../scripts/browser.py"
