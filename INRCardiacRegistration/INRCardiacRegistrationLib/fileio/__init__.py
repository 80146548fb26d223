"""Layer 1, file input and output: 4D sequences (NIfTI/NRRD/MHA, ``.seq.nrrd``, frame folders, DICOM), landmarks
(Slicer markups, ``.fcsv``, CSV; LPS mm) and displacement-field transforms (ITK, resampling convention). No torch."""
