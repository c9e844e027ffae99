"""layeropt_jax: layer-wise adaptive optimizers as optax transformations."""

from layeropt_jax._adaptive import scale_by_adam
from layeropt_jax._aovs import AOVS_SCALES
from layeropt_jax._aovs import aovs
from layeropt_jax._aovs import orthogonalize_matrix
from layeropt_jax._aovs import scale_by_aovs
from layeropt_jax._baselines import adamw
from layeropt_jax._component_metrics import COMPONENT_METRICS
from layeropt_jax._component_metrics import ComponentMetricsState
from layeropt_jax._component_metrics import with_component_metrics
from layeropt_jax._baselines import ademamix
from layeropt_jax._baselines import lamb
from layeropt_jax._baselines import lion
from layeropt_jax._baselines import muon
from layeropt_jax._baselines import sophia
from layeropt_jax._ladm import LADM_SCALES
from layeropt_jax._ladm import ladm
from layeropt_jax._ladm import ladm_alpha
from layeropt_jax._ladm import scale_by_ladm
from layeropt_jax._ladm import ScaleByLadmState
from layeropt_jax._lamo import lamo
from layeropt_jax._lamo import lamo_beta
from layeropt_jax._lamo import scale_by_lamo
from layeropt_jax._lamo import ScaleByLamoState
from layeropt_jax._lamvs import LAMVS_SCALES
from layeropt_jax._lamvs import lamvs
from layeropt_jax._lamvs import scale_by_lamvs
from layeropt_jax._layer_adam import layer_adam
from layeropt_jax._malao import clip_by_tensor_norm
from layeropt_jax._malao import MALAO_SCALES
from layeropt_jax._malao import malao
from layeropt_jax._stable_adamw import scale_by_stable_adam
from layeropt_jax._stable_adamw import stable_adamw
from layeropt_jax.labels import COMPONENTS
from layeropt_jax.labels import DEFAULT_LABEL_RULES
from layeropt_jax.labels import label_by_shape
from layeropt_jax.labels import label_params
from layeropt_jax.labels import NAMING_CONVENTIONS
from layeropt_jax.layerwise import label_table
from layeropt_jax.layerwise import LabelAssignment
from layeropt_jax.layerwise import decay_weights
from layeropt_jax.layerwise import multiplier_table
from layeropt_jax.matrices import DEFAULT_MATRIX_RULES
from layeropt_jax.matrices import is_weight
from layeropt_jax.matrices import matrix_dimension_numbers
from layeropt_jax.matrices import weights_mask
from layeropt_jax.layerwise import scale_by_layer
from layeropt_jax.layerwise import UNIT_SCALES
from layeropt_jax.registry import get_optimizer
from layeropt_jax.registry import hyperparameters
from layeropt_jax.registry import METHOD_SCALES
from layeropt_jax.registry import OPTIMIZERS
from layeropt_jax.registry import register_optimizer
from layeropt_jax.search import coordinate_search
from layeropt_jax.search import Grid
from layeropt_jax.search import MULTIPLIER_GRID
from layeropt_jax.search import Search
from layeropt_jax.search import search_multipliers
from layeropt_jax.search import Stage
from layeropt_jax.search import tune

__version__ = "0.1.0"

__all__ = (
    "AOVS_SCALES",
    "COMPONENTS",
    "COMPONENT_METRICS",
    "ComponentMetricsState",
    "DEFAULT_LABEL_RULES",
    "DEFAULT_MATRIX_RULES",
    "Grid",
    "LADM_SCALES",
    "LAMVS_SCALES",
    "LabelAssignment",
    "MALAO_SCALES",
    "METHOD_SCALES",
    "MULTIPLIER_GRID",
    "NAMING_CONVENTIONS",
    "OPTIMIZERS",
    "ScaleByLadmState",
    "ScaleByLamoState",
    "Search",
    "Stage",
    "UNIT_SCALES",
    "adamw",
    "ademamix",
    "aovs",
    "clip_by_tensor_norm",
    "coordinate_search",
    "decay_weights",
    "get_optimizer",
    "hyperparameters",
    "is_weight",
    "label_by_shape",
    "label_params",
    "label_table",
    "ladm",
    "ladm_alpha",
    "lamb",
    "lamo",
    "lamo_beta",
    "lamvs",
    "layer_adam",
    "lion",
    "malao",
    "matrix_dimension_numbers",
    "multiplier_table",
    "muon",
    "orthogonalize_matrix",
    "register_optimizer",
    "scale_by_adam",
    "scale_by_aovs",
    "scale_by_ladm",
    "scale_by_lamo",
    "scale_by_lamvs",
    "scale_by_layer",
    "scale_by_stable_adam",
    "search_multipliers",
    "sophia",
    "stable_adamw",
    "tune",
    "weights_mask",
    "with_component_metrics",
)
