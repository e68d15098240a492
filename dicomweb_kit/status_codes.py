"""Failure and warning reason codes of the Store Instances Response, as named constants.

PS3.18 Annex I.2 (Tables I.2-1 and I.2-2) and PS3.4 §B.2.3. These values are part of our
conformance statement: change them only together with it.
"""

from __future__ import annotations

from typing import Final

# Failure Reason (0008,1197), PS3.18 Table I.2-2.
PROCESSING_FAILURE: Final = 0x0110
DUPLICATE_SOP_INSTANCE: Final = 0x0111  # PS3.7 §C.4 "Duplicate SOP Instance"; used by on_duplicate="reject"
SOP_CLASS_NOT_SUPPORTED: Final = 0x0122
OUT_OF_RESOURCES: Final = 0xA700
DATASET_DOES_NOT_MATCH_SOP_CLASS: Final = 0xA900
CANNOT_UNDERSTAND: Final = 0xC000
TRANSFER_SYNTAX_NOT_SUPPORTED: Final = 0xC122
# Implementation-specific, in the "Cxxx cannot understand" range that Table I.2-2 leaves open
# (dcm4chee uses the same value): the instance's Study Instance UID differs from the one in the
# target resource of POST /studies/{study} (PS3.18 §10.5.1).
STUDY_INSTANCE_UID_MISMATCH: Final = 0xC409

# Warning Reason (0008,1196), PS3.18 Table I.2-1.
COERCION_OF_DATA_ELEMENTS: Final = 0xB000
DATASET_DOES_NOT_MATCH_SOP_CLASS_WARNING: Final = 0xB007
ELEMENTS_DISCARDED: Final = 0xB006
