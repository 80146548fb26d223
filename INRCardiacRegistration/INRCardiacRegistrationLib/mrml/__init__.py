"""Layer 4, 3D Slicer's MRML: the only package that imports ``slicer`` (MRML classes only, never Qt or
``slicer.app``), so it runs inside Slicer and on the ``slicer-core`` wheel. Inputs exported from a scene, run
folders imported as sequences, a run driven from a scene, TotalSegmentator on every frame."""
