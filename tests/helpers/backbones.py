"""One small member of each backbone family the dense-prediction tasks take (kwargs shrink Swin to seconds); HorNet
takes 1 channel like the scenes."""

FAMILIES = {
    "hornet_micro_gf": dict(in_chans=1, kwargs={"stem_stride": 4}),
    "convnext_atto": dict(in_chans=3, kwargs={}),
    "swin_tiny_patch4_window7_224": dict(
        in_chans=3, kwargs={"embed_dim": 24, "depths": (1, 1, 1, 1), "num_heads": (1, 1, 1, 1), "window_size": 4}
    ),
    "resnet18": dict(in_chans=3, kwargs={}),
}
