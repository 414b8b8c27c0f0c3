# The summary (one row per variant, hook and corpus), the figures of each hook, the depth figure across
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
        corpus_survival=get_corpus_survival,
        corpus_metrics=get_corpus_metrics,
        corpus_predictability=get_corpus_predictability,
        corpus_replicates=get_corpus_replicates,
        scan=get_way_forward_scan,
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
        corpus=CFG.corpus.label,
        corpora=get_corpora,
        high=CFG.repair.high,
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


# With further audit corpora: why survival moves between them (per hook and corpus: FP
# perplexity, the SAE's FVU, the FP-active features and those shared with the main corpus), and
# survival per corpus side by side.
rule domains:
    input:
        survival=get_domain_survival,
        fp_metrics=get_domain_fp_metrics,
        fp_activations=get_domain_fp_activations,
        saes=get_saes,
    output:
        report(
            f"{R}/{{model}}/domains.csv",
            caption="../report/domains.rst",
            category="Summary",
        ),
    log:
        "logs/{model}/domains.log",
    conda:
        ENV
    params:
        corpora=lambda wildcards: CFG.corpus_labels(),
        hooks=get_hooks,
        variants=lambda wildcards: {
            c: CFG.corpus_variants(wildcards.model, c) for c in CFG.corpus_labels()
        },
        code=script_code("domains"),
    script:
        "../scripts/domains.py"


rule corpus_figure:
    input:
        summary=f"{R}/{{model}}/summary.csv",
    output:
        **{CORPUS_FIGURE: figure(CORPUS_FIGURE, per_hook=False)},
    log:
        "logs/{model}/corpus_figure.log",
    conda:
        ENV
    params:
        code=script_code("corpus_figure"),
    script:
        "../scripts/corpus_figure.py"
