# featureaudit: what weight compression does to the SAE features of a language model.
#   snakemake --cores 2 --profile profiles/default            (embedded default, config.yaml)
#   snakemake --cores 8 --configfile config/paper.yaml        (Pythia-70M and Gemma-2-2B)
from snakemake.utils import min_version

min_version("9.0")

# No `configfile:` here: Snakemake would deep-merge it under a user's --configfile (adding the
# default model to every audit). profiles/default names config.yaml as the default instead.


include: "workflow/rules/common.smk"


wildcard_constraints:
    model="|".join(MODELS),
    variant=VARIANT_PATTERN,
    quantized=QUANTIZED_PATTERN,
    ckpt=r"[A-Za-z0-9_]+",
    hook=HOOK_PATTERN,
    corpus_dir=CORPUS_DIR_PATTERN,
    corpus="|".join(EXTRA_CORPORA) or "(?!)",
    target="|".join(MIX_TYPES),


include: "workflow/rules/tokens.smk"
include: "workflow/rules/sae.smk"
include: "workflow/rules/producers.smk"
include: "workflow/rules/variant.smk"
include: "workflow/rules/survival.smk"
include: "workflow/rules/overlap.smk"
include: "workflow/rules/causal.smk"
include: "workflow/rules/repair.smk"
include: "workflow/rules/report.smk"


rule all:
    default_target: True
    input:
        get_final_outputs(),
