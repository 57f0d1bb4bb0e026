"""darnax_core: deep asymmetric recurrent networks with local learning rules, in JAX.

This package never imports torch or lightning.
"""

from darnax_core._builders import (
    TUTORIAL_09 as TUTORIAL_09,
    PaperConfig as PaperConfig,
    chain_model as chain_model,
    paper_model as paper_model,
    paper_model_optimizer as paper_model_optimizer,
    paper_protocol as paper_protocol,
)
from darnax_core._couplings import (
    DenseCoupling as DenseCoupling,
    EllCoupling as EllCoupling,
    ell_from_dense as ell_from_dense,
)
from darnax_core._dynamics import (
    PhaseInfo as PhaseInfo,
    Schedule as Schedule,
    constant_fields as constant_fields,
    input_messages as input_messages,
    label_messages as label_messages,
    row_field as row_field,
    run_phase as run_phase,
    sweep as sweep,
)
from darnax_core._edges import (
    Ferromagnetic as Ferromagnetic,
    LabelFeedback as LabelFeedback,
    Linear as Linear,
    cross_entropy_readout as cross_entropy_readout,
    label_rescaling as label_rescaling,
)
from darnax_core._layers import BinaryLayer as BinaryLayer, Readout as Readout, TanhLayer as TanhLayer
from darnax_core._network import Messages as Messages, Network as Network
from darnax_core._ops import sign as sign
from darnax_core._optim import (
    combine as combine,
    init_optimizer as init_optimizer,
    module_labels as module_labels,
    multiplicative_decay as multiplicative_decay,
    paper_optimizer as paper_optimizer,
    partition as partition,
    per_module as per_module,
    trainable_leaves as trainable_leaves,
)
from darnax_core._protocols import (
    EvalMetrics as EvalMetrics,
    Protocol as Protocol,
    StepMetrics as StepMetrics,
    encode_labels as encode_labels,
    eval_step_impl as eval_step_impl,
    make_eval_step as make_eval_step,
    make_train_step as make_train_step,
    relax as relax,
    train_step_impl as train_step_impl,
)
from darnax_core._rules import (
    cross_entropy_rule as cross_entropy_rule,
    perceptron_rule as perceptron_rule,
    tanh_rule as tanh_rule,
    truncated_tanh_rule as truncated_tanh_rule,
)
from darnax_core._state import State as State, init_state as init_state
from darnax_core._loop import (
    DispatchWindow as DispatchWindow,
    EpochTotals as EpochTotals,
    FitResult as FitResult,
    add_step_metrics as add_step_metrics,
    evaluate as evaluate,
    fit as fit,
    make_epoch_step as make_epoch_step,
    pad_batch as pad_batch,
    zero_totals as zero_totals,
)
from darnax_core._inspect import relaxed_state as relaxed_state, trajectory as trajectory
from darnax_core._theory import (
    FixedPointCount as FixedPointCount,
    count_fixed_points as count_fixed_points,
    enumerate_fixed_points as enumerate_fixed_points,
    expected_fixed_points as expected_fixed_points,
    is_fixed_point as is_fixed_point,
    mean_fixed_point_count as mean_fixed_point_count,
    random_couplings as random_couplings,
)
from darnax_core._theory_dynamics import (
    AccessibilityCurve as AccessibilityCurve,
    DynamicsResult as DynamicsResult,
    accessibility as accessibility,
    chain_accessibility as chain_accessibility,
    run_chain_dynamics as run_chain_dynamics,
    run_sign_dynamics as run_sign_dynamics,
)
