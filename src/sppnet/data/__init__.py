"""Datasets, built-in data generators (shapes, photographs), decoding, transforms, batching."""

from sppnet.data._paths import OutsideRootError
from sppnet.data.batching import SizeGroupedBatchSampler, pad_collate, padding_fraction
from sppnet.data.coco import CocoDetection, coco_ground_truth
from sppnet.data.decode import ImageDecodeError, load_image
from sppnet.data.image_folder import IMAGE_EXTENSIONS, ImageFolder, read_image_size
from sppnet.data.photos import PHOTO_CLASSES, PHOTO_KINDS, generate_photo_dataset
from sppnet.data.splits import class_balanced_splits
from sppnet.data.synthetic import (
    GENERATOR_VERSION,
    SYNTHETIC_CLASSES,
    generate_voc_dataset,
    image_seed,
    make_classification_view,
    render_synthetic_image,
)
from sppnet.data.transforms import (
    PCA_EIGENVALUES,
    PCA_EIGENVECTORS,
    EvalCropTransform,
    FullImageTransform,
    TrainTransform,
    check_mean,
    five_crop_boxes,
    hflip,
    pca_lighting,
    resize_shorter,
    resize_tensor,
    subtract_mean,
    to_tensor,
)
from sppnet.data.views import feature_map_view_boxes, ten_view_boxes
from sppnet.data.voc import (
    VOC_CLASSES,
    VOCDetection,
    collect_class_names,
    parse_voc_xml,
    read_class_file,
    read_class_names,
    read_split_ids,
    write_voc_xml,
)
from sppnet.data.yolo import YoloDetection, parse_yolo_labels, read_yolo_names, yolo_splits

__all__ = [
    "GENERATOR_VERSION",
    "IMAGE_EXTENSIONS",
    "PCA_EIGENVALUES",
    "PCA_EIGENVECTORS",
    "PHOTO_CLASSES",
    "PHOTO_KINDS",
    "SYNTHETIC_CLASSES",
    "VOC_CLASSES",
    "CocoDetection",
    "EvalCropTransform",
    "FullImageTransform",
    "ImageDecodeError",
    "ImageFolder",
    "OutsideRootError",
    "SizeGroupedBatchSampler",
    "TrainTransform",
    "VOCDetection",
    "YoloDetection",
    "check_mean",
    "class_balanced_splits",
    "coco_ground_truth",
    "collect_class_names",
    "feature_map_view_boxes",
    "five_crop_boxes",
    "generate_photo_dataset",
    "generate_voc_dataset",
    "hflip",
    "image_seed",
    "load_image",
    "make_classification_view",
    "pad_collate",
    "padding_fraction",
    "parse_voc_xml",
    "parse_yolo_labels",
    "pca_lighting",
    "read_class_file",
    "read_class_names",
    "read_image_size",
    "read_split_ids",
    "read_yolo_names",
    "render_synthetic_image",
    "resize_shorter",
    "resize_tensor",
    "subtract_mean",
    "ten_view_boxes",
    "to_tensor",
    "write_voc_xml",
    "yolo_splits",
]
