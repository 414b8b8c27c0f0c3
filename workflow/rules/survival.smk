# Per hook and corpus: FP's statistics once, then every variant's survival and predictability
# against them ({HC}: results/<model>/<hook>, or results/<model>/corpora/<label>/<hook>).
rule fp_statistics:
    input:
        codes=f"{C}/codes/fp",
        sae=f"{H}/sae",
        tokens=f"{C}/tokens.parquet",
    output:
        statistics=f"{HC}/fp_statistics.parquet",
        blocks=f"{HC}/fp_blocks.npz",
        contexts=f"{HC}/contexts.parquet",
    log:
        "logs/{model}{corpus_dir}/{hook}/fp_statistics.log",
    conda:
        ENV
    params:
        uncertainty=as_params(CFG.uncertainty),
        evidence=as_params(CFG.evidence),
        code=script_code("fp_statistics"),
    script:
        "../scripts/fp_statistics.py"


rule survival:
    input:
        fp=f"{C}/codes/fp",
        variant=f"{C}/codes/{{variant}}",
        statistics=f"{HC}/fp_statistics.parquet",
        tokens=f"{C}/tokens.parquet",
        contexts=f"{HC}/contexts.parquet",
    output:
        table=f"{HC}/survival/{{variant}}.parquet",
        replicates=f"{HC}/bootstrap/{{variant}}.npz",
        evidence=f"{HC}/evidence/{{variant}}.parquet",
    log:
        "logs/{model}{corpus_dir}/{hook}/survival/{variant}.log",
    conda:
        ENV
    params:
        thresholds=as_params(CFG.survival),
        uncertainty=as_params(CFG.uncertainty),
        code=script_code("survival"),
    script:
        "../scripts/survival.py"


rule predictability:
    input:
        survival=f"{HC}/survival/{{variant}}.parquet",
        replicates=f"{HC}/bootstrap/{{variant}}.npz",
        blocks=f"{HC}/fp_blocks.npz",
    output:
        auc=f"{HC}/predictability/{{variant}}.json",
        risk=f"{HC}/predictability/{{variant}}.risk.parquet",
    log:
        "logs/{model}{corpus_dir}/{hook}/predictability/{variant}.log",
    conda:
        ENV
    params:
        settings=as_params(CFG.predictability),
        uncertainty=as_params(CFG.uncertainty),
        code=script_code("predictability"),
    script:
        "../scripts/predictability.py"
