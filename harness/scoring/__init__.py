"""Speech quality scores and the metric registry.

- ``registry``   every score a trial can report: direction, unit, range, meaning
- ``checks``     what may be scored: settings, mono signals, references a pair is skipped for
- ``speech``     PESQ, the composite measures, (E)STOI, SI-SNR
- ``spectral``   log-mel L1 and multi-resolution STFT distances
- ``composite``  CSIG / CBAK / COVL from LLR, WSS and segmental SNR
- ``dnsmos``     DNSMOS P.835, non-intrusive
- ``pitch``      pitch and periodicity error (CARGAN, torchcrepe)
- ``utterance``  every asked score of one utterance, with the skip and worst-case rules
- ``pairs``      many utterances into a report, over the process pool
- ``pool``       the worker processes scoring runs in
- ``files``      ``run.py score``: two WAV files or folders, matched, read and scored
- ``formats``    a report as a table, CSV or JSON
"""
