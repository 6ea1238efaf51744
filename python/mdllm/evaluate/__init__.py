"""Evidence for generated conformations: physical validity, all-atom rebuild, comparison with
reference MD and an HTML report.

``check_backbone`` needs only numpy and the compiled core; the rebuild needs the ``physics`` extra
(OpenMM, PDBFixer), the comparison and plots the ``analysis`` extra (deeptime, matplotlib). Those
are imported inside the functions that use them.
"""

from mdllm.evaluate.validity import ValidityLimits, ValidityReport, check_backbone, filter_frames

__all__ = ["ValidityLimits", "ValidityReport", "check_backbone", "filter_frames"]
