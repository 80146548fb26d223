"""Layer 3, the whole cycle: the run request (:mod:`.request`, inputs + settings, the worker's command line), the
checked inputs, the driver that registers every frame (:mod:`.driver`, the only module here that needs torch), the
run folder (the contract with Slicer and scripts), its report, and the worker as a background process."""
