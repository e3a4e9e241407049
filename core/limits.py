"""Every limit on what we read and on what a request may ask for, named in one place.

Files from elsewhere (public zoos, packs, hand-edited workspaces, dataset folders) are untrusted: each read is
bounded in bytes before it starts, so a link to /dev/zero, a FIFO or a compression bomb costs an error message,
not the machine. Requests (CLI options, app fields) are bounded so that a typo cannot ask for terabytes; the
bounds sit far above anything this workbench is sized for (a 2-core CPU or one GPU).
"""

from __future__ import annotations

MiB = 1 << 20
GiB = 1 << 30

# ---------------------------------------------------------------- files we read

# A JSON record: a manifest, a run's config, eval.json or result.json, a public zoo's params.json.
MAX_JSON_BYTES = 16 * MiB
# A public zoo's result.json: one JSON line per epoch.
MAX_RESULT_LOG_BYTES = 64 * MiB
# A torch checkpoint of a public zoo, on disk and unpacked (the sum of its zip members' uncompressed sizes):
# their CNNs have at most a few thousand parameters (under 1 MiB even with optimiser state); a ResNet-18 state dict
# (11.2 M parameters, optimiser state kept in a file of its own) is about 45 MB.
MAX_CHECKPOINT_BYTES = 64 * MiB
# Our own resumable training state (model, AdamW's two moments, the best model: 16 bytes per parameter), which never
# travels in a pack: room for the largest autoencoder allowed (MAX_AE_PARAMETERS; SANE's paper preset is 0.87e9).
MAX_TRAIN_STATE_BYTES = 20 * GiB
# One dataset file (an IDX file, decompressed, or a CIFAR-10 batch); EMNIST's largest is about 0.7 GiB.
MAX_DATASET_FILE_BYTES = 2 * GiB

# ---------------------------------------------------------------- packs (zip files of workspaces)

# One file of a workspace (zoo weights, tables, a run's model), read from disk or from a pack.
MAX_WORKSPACE_FILE_BYTES = 8 * GiB

# ---------------------------------------------------------------- packs (zip files of workspaces)

# Members and their sizes as the zip's directory declares them (extraction also stops at the declared size);
# each member at most MAX_WORKSPACE_FILE_BYTES.
MAX_PACK_MEMBERS = 100_000
MAX_PACK_BYTES = 16 * GiB
# Unpacked over packed size, for members above 1 MiB. Our own packs stay under 2 (weights and parquet barely
# deflate; the shipped pack's largest ratio is 1.5); a member of zeros reaches about 1,000: a zip bomb is refused
# before it fills the disk, even within the size caps.
MAX_PACK_RATIO = 100
PACK_RATIO_FROM_BYTES = 1 * MiB
# What a pack may hold: data only. A pickled file (.pt, .pkl) could run code when loaded, so none is packed
# and none is unpacked; resumable training state (train_state.pt) stays behind.
PACK_SUFFIXES = (".json", ".parquet", ".safetensors")

# ---------------------------------------------------------------- requests

MAX_SEED = 2**32 - 1
# Counts of models, samples and epochs.
MAX_MODELS = 100_000
MAX_EPOCHS = 100_000
MAX_SAMPLES = 100_000
MAX_BATCH_SIZE = 1 << 20
# A zoo's float32 values held while it trains (every saved snapshot plus each model's weights and optimiser
# state): 2^31 values are 8 GiB.
MAX_ZOO_VALUES = 2**31
# An autoencoder's size, in parameters (4 bytes each, and as many again for each optimiser moment), estimated
# from its settings before anything is built; any one size setting, and the depth of each transformer stack.
# SANE's paper preset for ResNets (width 2048, 8 + 8 blocks) estimates at about 0.87 billion: 14 GB with AdamW.
MAX_AE_PARAMETERS = 1_000_000_000
MAX_SIZE_SETTING = 1 << 20
MAX_LAYERS = 256
