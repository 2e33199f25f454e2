"""Detection runs: detector training (feature cache, fine-tuning, SVMs, box regression),
VOC/COCO evaluation, detection on image files, and saving / loading a trained detector."""

from sppnet.detect.config import DetectorTrainConfig
from sppnet.detect.data import keep_first_images, open_detection_dataset, parse_classes
from sppnet.detect.evaluate import evaluate_detector
from sppnet.detect.images import (
    ImageDetections,
    ImageFailure,
    detect_images,
    save_image_detections,
)
from sppnet.detect.io import load_detector, save_detector
from sppnet.detect.proposals import get_proposals
from sppnet.detect.train import train_detector
from sppnet.detect.voc_results import read_voc_results, write_voc_results

__all__ = [
    "DetectorTrainConfig",
    "ImageDetections",
    "ImageFailure",
    "detect_images",
    "evaluate_detector",
    "get_proposals",
    "keep_first_images",
    "load_detector",
    "open_detection_dataset",
    "parse_classes",
    "read_voc_results",
    "save_detector",
    "save_image_detections",
    "train_detector",
    "write_voc_results",
]
