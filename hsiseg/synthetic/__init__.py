"""The synthetic neurosurgical scene: chromophore tissue spectra (:mod:`.tissues`), scenes (:mod:`.scene`)
and the demo data set written as real cube files with a data spec (:mod:`.dataset`)."""
