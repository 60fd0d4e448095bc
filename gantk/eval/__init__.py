"""Evaluation: metrics as pure functions (:mod:`.metrics`), the protocols that turn
generated samples into numbers (:mod:`.protocols`, chosen through the plugin system
in :mod:`.evaluate`), the W1 floors (:mod:`.floors`), the digits classifier
(:mod:`.digits`), the image feature extractors (:mod:`.features`, :mod:`.inception`)
and evaluation during training (:mod:`.callback`)."""
from ..sampling import generate
from . import metrics
from .callback import CALLBACK_N, EvalCallback
from .digits import (
    CLASSIFIER_EPOCHS,
    CLASSIFIER_VERSION,
    digits_classifier,
    digits_split,
    round_trip,
    to_digit_inputs,
)
from .evaluate import (
    DEFAULT_N,
    METRIC_NOTES,
    MIN_N,
    choose_protocol,
    compare,
    evaluate,
    load_images,
    make_protocol,
    score_generator,
)
from .features import (
    DEFAULT_BATCH,
    ENV_WEIGHTS,
    DigitsFeatures,
    InceptionV3,
    extract_features,
    find_inception_weights,
    inception_weight_places,
    load_extractor,
    real_features,
)
from .floors import (
    DEFAULT_DRAWS,
    FLOOR_DRAWS,
    FLOOR_SEED,
    FLOOR_VERSION,
    floor_pairs,
    latent_seed,
    options_key,
    ratio_se,
    shipped_floor,
    toy_w1_floor,
)
from .inception import FIDInceptionV3
from .protocols import IMAGE_DEFAULT_N, DigitsProtocol, ImageProtocol, PointsProtocol, ToyProtocol, feature_metrics

__all__ = [
    "DEFAULT_BATCH", "ENV_WEIGHTS", "IMAGE_DEFAULT_N", "DigitsFeatures", "FIDInceptionV3", "ImageProtocol",
    "InceptionV3", "compare", "extract_features", "feature_metrics", "find_inception_weights",
    "inception_weight_places", "load_extractor", "load_images", "real_features",
    "CALLBACK_N", "CLASSIFIER_EPOCHS", "CLASSIFIER_VERSION", "DEFAULT_DRAWS", "DEFAULT_N", "FLOOR_DRAWS",
    "FLOOR_SEED", "FLOOR_VERSION", "METRIC_NOTES", "MIN_N", "DigitsProtocol", "EvalCallback", "PointsProtocol",
    "ToyProtocol", "choose_protocol", "digits_classifier", "digits_split", "evaluate", "floor_pairs", "generate",
    "latent_seed", "make_protocol", "metrics", "options_key", "ratio_se", "round_trip", "score_generator",
    "shipped_floor", "to_digit_inputs", "toy_w1_floor",
]
