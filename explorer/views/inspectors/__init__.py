"""Inspectors: small views that open up one method's training signal for one clicked image.

- ``TripletInspector`` (triplet.py)  anchor, hardest positive, hardest negative, their distances and category;
- ``AngleView`` (angles.py)          angles between class centres, each point's angle to its own;
- ``PairHistogram`` (pairs.py)       distances of positive and negative pairs against the margin;
- ``ContrastiveInspector`` (contrastive.py) simclr: two views of a clicked image and its InfoNCE row;
- ``PretextDebugger`` (pretext.py)   rotation / colorization / inpainting: input, target, prediction;
- ``AugmentationPreview`` (augmentations.py) random views of a few images at settings moved with sliders.

Every inspector is an ``explorer.views.kit.Panel`` over ``base.Inspector``, with the same small API:

    widget.set_run(run_dir, dataset=None, snapshot=None)   # a run directory (str or Path)
    widget.show_point(test_row)                            # a row of the dataset's test split (-1: none)
    widget.attach(session)                                 # or: follow an explorer.session.Session

``attach`` connects ``run_selected``, ``dataset_ready``, ``snapshot_added``, ``view_changed`` (the
time-lapse frame) and ``point_selected``. Inspectors that need the trained heads (decoders, projection
head, class weights) ask the session to rebuild the method from ``checkpoint.pt``
(``Session.request_trained_method``, in a worker thread) and ask again when the checkpoint file
changes; a followed session's dataset is never loaded here (it arrives with ``dataset_ready``). What
stays in the GUI thread is small: one forward pass of a few images (at most a batch of 64) on the CPU,
for a clicked point. A panel nobody sees draws nothing until it is shown (``Panel.refresh``).
"""
from explorer.views.inspectors.angles import AngleView
from explorer.views.inspectors.augmentations import AugmentationPreview
from explorer.views.inspectors.base import Inspector, Pending
from explorer.views.inspectors.contrastive import ContrastiveInspector
from explorer.views.inspectors.pairs import PairHistogram
from explorer.views.inspectors.pretext import PretextDebugger
from explorer.views.inspectors.triplet import TripletInspector

INSPECTORS: tuple[type[Inspector], ...] = (TripletInspector, AngleView, PairHistogram, ContrastiveInspector,
                                           PretextDebugger, AugmentationPreview)

# which inspector explains the clicked point of a run of each method (the window raises its dock),
# from each inspector's own declaration
POINT_INSPECTOR: dict[str, str] = {method: cls.name for cls in INSPECTORS for method in cls.point_methods}

__all__ = ["INSPECTORS", "POINT_INSPECTOR", "AngleView", "AugmentationPreview", "ContrastiveInspector", "Inspector",
           "PairHistogram", "Pending", "PretextDebugger", "TripletInspector"]
