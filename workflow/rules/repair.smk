# Repair: which tensor groups break the features (a sensitivity scan per target type), per-tensor
# mixes chosen from it (or by KL, at random, ends first) at a bits-per-weight budget, written as
# recipe files and made by llama-quantize (the llama_quantize rule, producers.smk), then audited
# like any checkpoint (ckpt-<key>); the comparison table and figures (featureaudit/repair/).


# The scan's own tokens, disjoint from every split a mix is judged on.
rule scan_tokens:
    input:
        taken=get_scan_taken,
    output:
        f"{R}/{{model}}/repair/scan_tokens.parquet",
    log:
        "logs/{model}/repair/scan_tokens.log",
    conda:
        ENV
    params:
        source=get_source,
        corpus=MAIN_CORPUS,
        n_tokens=CFG.repair.scan_tokens,
        seed=CFG.repair.seed,
        code=script_code("scan_tokens"),
    script:
        "../scripts/scan_tokens.py"


# One process per target type: the reference loaded and the FP pass made once, then every group
# alone at the target, then the additivity subsets.
rule scan:
    input:
        tokens=f"{R}/{{model}}/repair/scan_tokens.parquet",
        reference=f"{R}/{{model}}/reference",
        saes=get_saes,
    output:
        scan=f"{R}/{{model}}/repair/{{target}}/scan.csv",
        additivity=f"{R}/{{model}}/repair/{{target}}/additivity.csv",
    log:
        "logs/{model}/repair/{target}/scan.log",
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
        thresholds=as_params(CFG.survival),
        seed=CFG.repair.seed,
        code=script_code("scan"),
    script:
        "../scripts/scan.py"


# A mix's recipe file: the allocation at its budget (a preset's budget is read from that preset
# quantized once), one anchored pattern=type line per tensor.
rule recipe:
    input:
        gguf=f"{R}/{{model}}/llama_cpp/reference.f32.gguf",
        scan=get_recipe_scan,
    output:
        recipe=f"{R}/{{model}}/repair/recipes/{{ckpt}}.txt",
        record=f"{R}/{{model}}/repair/recipes/{{ckpt}}.json",
    log:
        "logs/{model}/repair/recipes/{ckpt}.log",
    wildcard_constraints:
        ckpt=mix_keys(),
    conda:
        ENV
    params:
        mix=get_mix_settings,
        code=script_code("recipe"),
    script:
        "../scripts/recipe.py"


# What the repair shows: every mix and llama.cpp preset beside each other (survived and damaged
# per hook with intervals, perplexity, KL, bits per weight), the scan heatmaps, the Pareto view.
rule repair_report:
    input:
        summary=f"{R}/{{model}}/summary.csv",
        scans=get_scans,
        records=get_recipe_records,
    output:
        comparison=f"{R}/{{model}}/repair/comparison.csv",
        additivity=f"{R}/{{model}}/repair/additivity_summary.csv",
        figures=report(
            expand(
                f"{R}/{{{{model}}}}/figures/{{name}}.{{ext}}",
                name=["repair_pareto", "repair_scan"],
                ext=["png", "svg"],
            ),
            caption="../report/repair.rst",
            category="Repair",
        ),
    log:
        "logs/{model}/repair/report.log",
    conda:
        ENV
    params:
        methods=get_repair_methods,
        code=script_code("repair_report"),
    script:
        "../scripts/repair_report.py"
