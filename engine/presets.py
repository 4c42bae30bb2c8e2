"""Named starting points: a dataset, a method and a budget that fit the machine they are named for.

The window lists them; ``--preset NAME`` starts from one (any flag given beside it wins).
"""
# batch-hard on plain (not squared) distances, as Hermans et al. (2017) found more stable, and all ten
# classes in a batch with fewer images each (their P x K = 18 x 4 is in the same spirit: a hardest
# positive among 7 is less often an outlier than among 15). On Fashion-MNIST, one CPU epoch: precision@1
# 0.804 (squared, K8 x M16), 0.838 (plain), 0.852 (plain, K10 x M8); on a shared H200 in 215 s,
# 0.895 (probe 0.915), where K8 x M16 had reached 0.867 at its end
TRIPLET = {"method_params": {"mining": "batch-hard", "squared": False, "classes_per_batch": 10,
                             "samples_per_class": 8}}
# the self-supervised presets probe the pooled features, as SimCLR does (no dense neck after them). On a
# 5000-image Fashion-MNIST slice, 20 epochs of SimCLR: probe 0.834 without the neck, 0.803 with it
# (random init 0.804 and 0.787); the 3-minute CPU preset: 0.853 (0.836 to 0.845 with the neck)
SSL = {"encoder_params": {"neck": "none"}}
# on a GPU the SSL presets take a convnet twice as wide: SimCLR on the 5000-image slice, 30 epochs on the CPU,
# probe 0.860 with widths 64,128,256 against 0.837 with 32,64,128 (random init 0.819 and 0.802). Expected, not
# yet measured: on a GPU the small convnet's step is bound by launching its operators more than by its
# arithmetic, so the wider one costs few epochs (bench/gpu_presets.py runs both: simclr, simclr-narrow)
SSL_GPU = {"batch_size": 512, "embedding_dim": 256, "encoder_params": {"neck": "none", "widths": "64,128,256"}}

PRESETS: dict[str, dict] = {
    "digits": {"help": "scikit-learn's digits, supervised convnet: under a minute on a laptop CPU",
               "dataset": "digits", "method": "supervised"},
    "fashion-mnist-cpu": {"help": "Fashion-MNIST, supervised convnet, about 3 minutes of CPU training",
                          "dataset": "fashion-mnist", "method": "supervised", "epochs": 6,
                          "batch_size": 128, "eval_every": 1,
                          # one convolution per block: a quarter of the compute, so six epochs fit (152 s here)
                          "encoder_params": {"convs_per_block": 1}},
    "fashion-mnist-gpu": {"help": "Fashion-MNIST, supervised convnet, full budget on one GPU",
                          "dataset": "fashion-mnist", "method": "supervised", "epochs": 30,
                          "batch_size": 256, "device": "cuda"},
    # the GPU presets fit the whole job, evaluations included, into 9 minutes (--time-limit): on a fast
    # GPU they run more epochs, never longer
    **{f"{method}-fashion-gpu": {
        "help": f"Fashion-MNIST, {method} convnet, 9 minutes on one GPU (as many epochs as fit)",
        "dataset": "fashion-mnist", "method": method, "epochs": 200, "time_limit": 9.0,
        "eval_every": 2, "device": "cuda", **extra}
       for method, extra in (("triplet", TRIPLET), ("arc", {}), ("simclr", SSL_GPU), ("byol", SSL_GPU),
                             ("vicreg", SSL_GPU))},
    **{f"{method}-fashion-cpu": {
        "help": f"Fashion-MNIST, {method}, about 3 minutes of CPU (as many steps as fit)",
        "dataset": "fashion-mnist", "method": method, "epochs": 10, "time_limit": 3.0, "eval_every": 0.5,
        **extra, "encoder_params": {"convs_per_block": 1, **extra.get("encoder_params", {})}}
       for method, extra in (("triplet", TRIPLET), ("arc", {}), ("simclr", SSL))},
    # colourisation on shapes whose colour follows the shape: on plain shapes the hue is drawn apart from
    # the shape, so the colours of a grey image cannot be told (engine/data/shapes.py)
    "colorization-shapes-cpu": {"help": "painted shapes (each shape its own colour), colourisation from the "
                                "grey image: about a minute of CPU training",
                                "dataset": "painted-shapes", "method": "colorization"},
    "transfer-fashion-cpu": {"help": "Fashion-MNIST from ImageNet EfficientNet-Lite0 features (frozen), "
                             "5000 images at 96 px: a few minutes on a CPU",
                             "dataset": "fashion-mnist", "method": "transfer", "encoder": "efficientnet-lite0",
                             "train_size": 5000, "test_size": 2000, "epochs": 3, "batch_size": 64,
                             "method_params": {"freeze": True}, "encoder_params": {"input_size": 96}},
}
