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

# The largest magnitude of a zoo weight that is loaded (core/zoo/model_zoo.py); a checkpoint beyond it is skipped
# like one holding NaN. Trained small networks hold weights of order 1 (the default zoo's largest is below 10), and
# preparation sums squares over the zoo in float32: at 1e6, 1e12 per square times 1e9 values stays far below
# float32's 3.4e38, where a zoo holding 3e38 made training and sampling fail with a ValueError.
MAX_ABS_WEIGHT = 1e6

# ---------------------------------------------------------------- packs (zip files of workspaces)

# One file of a workspace (zoo weights, tables, a run's model), read from disk or from a pack.
MAX_WORKSPACE_FILE_BYTES = 8 * GiB
# What one table (a parquet file) decodes to in memory, from its footer before reading and as read. The largest we
# write is a run's embeddings: 100,000 checkpoints x a 1,024-value embedding in float64 is 0.8 GiB; a checkpoint
# table of 10^6 rows is about 0.2 GiB.
MAX_TABLE_BYTES = 2 * GiB

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

# Names (workspaces in the app, runs) and paths typed by a user (core/names.py). A path is bounded as Linux bounds
# it (PATH_MAX 4,096 bytes, NAME_MAX 255 per component): beyond these the kernel answers ENAMETOOLONG anyway.
MAX_NAME_CHARS = 64
MAX_PATH_BYTES = 4096
MAX_PATH_PART_BYTES = 255

MAX_SEED = 2**32 - 1
# Classes a task may name (core/zoo/tasks.py `classes=`): far above any dataset here (EMNIST has 62, CIFAR-100 100);
# checked on the range as written, before a list of them is built.
MAX_TASK_CLASSES = 1000
# Counts of models, samples and epochs.
MAX_MODELS = 100_000
MAX_EPOCHS = 100_000
MAX_SAMPLES = 100_000
MAX_BATCH_SIZE = 1 << 20
# A generation's spread, in units of the anchors' median nearest-neighbour distance (core/gen/samplers/base.py):
# at 4 the draws already lie four anchor spacings out (the calibration's largest trial); 100 leaves room to explore
# and keeps codes and decoded weights far inside float32 (at 1e300 every weight was NaN). The outcome is checked too
# (core/gen/finite.py): whether a finite spread overflows depends on the autoencoder.
MAX_SPREAD = 100.0
# A learning rate (Adam, AdamW). Adam moves each weight by about lr per step, and our networks' weights are of
# order 0.1-1: above 1 every step overshoots the weights themselves and training only diverges (a zoo asked for
# lr 1e9 trained, then 45 of its 64 checkpoints were skipped on load as non-finite).
MAX_LR = 1.0
# A zoo's float32 values held in memory while it trains (each model's weights, gradients and optimiser state,
# and their copies while the resumable state is written; the saved snapshots go to disk): 2^31 values are 8 GiB.
MAX_ZOO_VALUES = 2**31
# An autoencoder's size, in parameters (4 bytes each, and as many again for each optimiser moment), estimated
# from its settings before anything is built; any one size setting, and the depth of each transformer stack.
# SANE's paper preset for ResNets (width 2048, 8 + 8 blocks) estimates at about 0.87 billion: 14 GB with AdamW.
MAX_AE_PARAMETERS = 1_000_000_000
MAX_SIZE_SETTING = 1 << 20
MAX_LAYERS = 256
