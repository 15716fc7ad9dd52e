"""The defaults, one place per concept: every road (Live, Photos, the commands, the trainer's previews and probe)
and the CLI's help read them from here. Imports nothing."""

MASK_RULES = ("mass", "percentile", "absolute")
MASK_RULE = "mass"  # DINO's rule: keep the top patches holding THRESHOLD of the attention mass
THRESHOLDS = {"mass": 0.6, "percentile": 80.0, "absolute": 0.01}  # each rule's parameter
MASS = THRESHOLDS["mass"]  # the DINO paper's 60% of the attention mass

IMAGE_SIZE = 224  # the shorter side fed to the model; aspect kept, both sides rounded to the patch
PREPROCESSINGS = ("official", "fast")  # how a picture is resized to the model's input (highlighter.preprocess)
PHOTO_PREPROCESSING = "official"  # Photos, `attention`, `eval`: visualize_attention.py's PIL bilinear
LIVE_PREPROCESSING = "fast"  # Live, `video`, `bench live`: one OpenCV pass
OVERLAY = "mask"  # the overlay mode of the app and `video`
FPS = 25.0  # the overlay video's frame rate for frame folders

MAE_MASK_RATIO = 0.75  # the fraction of patches hidden (the MAE paper's)
MAE_SEED = 0

# DINO's label propagation, eval_video_segmentation.py's defaults (its temperature is the constant in the code)
TRACK_N_LAST = 7
TRACK_NEIGHBOURHOOD = 12
TRACK_TOPK = 5
TRACK_TEMPERATURE = 0.1
TRACK_CLICK_SIMILARITY = 0.5  # Live and Photos: a click picks the connected patches at least this cosine-similar

KNN_K = 20  # DINO's k-NN evaluation
