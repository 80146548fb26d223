"""Cardiac function from a registered cycle (layer 4: reads run folders, uses the engine's maps): LV cavity and
myocardium volumes, EDV, ESV, SV, EF (:mod:`.volumes`)."""
