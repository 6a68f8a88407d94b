//! Merge ops: the inputs' trees stacked in order into one snapshot (`COPY --link`), by
//! `fileop::merge`.

use kiln_llb::{Digest, MergeOp};

use super::{Vertex, input_indexes, value_of};
use crate::error::EngineError;
use crate::value::Value;

/// Stacks the merge's inputs, in the op's order, on the blocking pool.
pub(super) async fn execute(
    vertex: &Vertex,
    merge: &MergeOp,
    inputs: &[Value],
) -> Result<Value, EngineError> {
    let images = vertex.env.images.clone();
    let index = input_indexes(&vertex.op);
    let order: Vec<Digest> = merge.inputs.iter().map(|i| i.vertex).collect();
    let inputs = inputs.to_vec();
    let digest = vertex.digest;
    tokio::task::spawn_blocking(move || {
        let values = order
            .iter()
            .map(|d| value_of(&index, &inputs, d).cloned())
            .collect::<Result<Vec<_>, _>>()?;
        crate::fileop::merge::merge(&images, &values, &digest)
    })
    .await
    .map_err(EngineError::task("merge"))?
}
