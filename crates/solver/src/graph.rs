//! The graph a caller hands to a solve: vertices with ids, ops and input lists.
//!
//! Vertices are added inputs-first, so a graph is acyclic and closed by construction and the
//! solver never has to detect cycles or dangling edges.

use std::collections::HashMap;
use std::fmt::Debug;
use std::hash::Hash;
use std::sync::Arc;

/// What a vertex id must be: in practice an op digest (`llb::Digest`) or a small integer in tests.
///
/// Ids are unique within a graph. Across concurrent solves of one [`Solver`](crate::Solver), work
/// is shared when the id, the op's cheap key material, its ignore-cache flag and its inputs' work
/// are all the same, so an id alone never makes two different computations one.
pub trait VertexId: Clone + Eq + Hash + Ord + Debug + Send + Sync + 'static {}

impl<T: Clone + Eq + Hash + Ord + Debug + Send + Sync + 'static> VertexId for T {}

/// Why a vertex could not be added or a target not found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GraphError<V: Debug> {
    /// The id was added before.
    #[error("vertex {0:?} is already in the graph")]
    Duplicate(V),
    /// An input was not added before the vertex that uses it.
    #[error("vertex {vertex:?} uses input {input:?}, which is not in the graph yet")]
    UnknownInput {
        /// The vertex being added.
        vertex: V,
        /// The missing input.
        input: V,
    },
    /// A solve target is not in the graph.
    #[error("target {0:?} is not in the graph")]
    UnknownTarget(V),
}

pub(crate) struct Node<V, O> {
    pub(crate) id: V,
    pub(crate) op: Arc<O>,
    /// Indexes into `Graph::nodes`, always smaller than this node's own index.
    pub(crate) inputs: Vec<usize>,
}

/// A DAG of operations, in the order it was built (a topological order).
pub struct Graph<V, O> {
    pub(crate) nodes: Vec<Node<V, O>>,
    index: HashMap<V, usize>,
}

impl<V: VertexId, O> Default for Graph<V, O> {
    fn default() -> Self {
        Self {
            nodes: Vec::new(),
            index: HashMap::new(),
        }
    }
}

impl<V: VertexId, O> std::fmt::Debug for Graph<V, O> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map()
            .entries(self.nodes.iter().map(|n| {
                let inputs: Vec<&V> = n.inputs.iter().map(|&i| &self.nodes[i].id).collect();
                (&n.id, inputs)
            }))
            .finish()
    }
}

impl<V: VertexId, O> Graph<V, O> {
    /// An empty graph.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a vertex whose inputs (in the order the op receives them) are already in the graph.
    /// The same input may appear more than once.
    pub fn add(&mut self, id: V, op: O, inputs: &[V]) -> Result<(), GraphError<V>> {
        if self.index.contains_key(&id) {
            return Err(GraphError::Duplicate(id));
        }
        let inputs = inputs
            .iter()
            .map(|input| {
                self.index
                    .get(input)
                    .copied()
                    .ok_or_else(|| GraphError::UnknownInput {
                        vertex: id.clone(),
                        input: input.clone(),
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        self.index.insert(id.clone(), self.nodes.len());
        self.nodes.push(Node {
            id,
            op: Arc::new(op),
            inputs,
        });
        Ok(())
    }

    /// Whether the graph has a vertex with this id.
    pub fn contains(&self, id: &V) -> bool {
        self.index.contains_key(id)
    }

    /// The op of a vertex.
    pub fn op(&self, id: &V) -> Option<&O> {
        self.index.get(id).map(|&i| &*self.nodes[i].op)
    }

    /// The inputs of a vertex, in order.
    pub fn inputs(&self, id: &V) -> Option<Vec<&V>> {
        self.index.get(id).map(|&i| {
            self.nodes[i]
                .inputs
                .iter()
                .map(|&j| &self.nodes[j].id)
                .collect()
        })
    }

    /// Vertex ids in the order they were added.
    pub fn ids(&self) -> impl Iterator<Item = &V> {
        self.nodes.iter().map(|n| &n.id)
    }

    /// How many vertices the graph has.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether the graph has no vertices.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    pub(crate) fn index_of(&self, id: &V) -> Option<usize> {
        self.index.get(id).copied()
    }

    /// Indexes of the vertices the targets need, in topological order (inputs first).
    pub(crate) fn closure(&self, targets: &[V]) -> Result<Vec<usize>, GraphError<V>> {
        let mut needed = vec![false; self.nodes.len()];
        for target in targets {
            let i = self
                .index_of(target)
                .ok_or_else(|| GraphError::UnknownTarget(target.clone()))?;
            needed[i] = true;
        }
        // Inputs always have smaller indexes, so one backwards sweep marks the whole closure.
        for i in (0..self.nodes.len()).rev() {
            if needed[i] {
                for &j in &self.nodes[i].inputs {
                    needed[j] = true;
                }
            }
        }
        Ok((0..self.nodes.len()).filter(|&i| needed[i]).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn add_checks_duplicates_and_inputs() {
        let mut g: Graph<u32, ()> = Graph::new();
        g.add(1, (), &[]).unwrap();
        assert_eq!(g.add(1, (), &[]), Err(GraphError::Duplicate(1)));
        assert_eq!(
            g.add(2, (), &[1, 3]),
            Err(GraphError::UnknownInput {
                vertex: 2,
                input: 3
            })
        );
        assert!(!g.contains(&2));
        g.add(2, (), &[1, 1]).unwrap();
        assert_eq!(g.inputs(&2), Some(vec![&1, &1]));
    }

    #[test]
    fn closure_is_the_needed_subgraph_in_order() {
        let mut g: Graph<u32, ()> = Graph::new();
        g.add(1, (), &[]).unwrap();
        g.add(2, (), &[]).unwrap();
        g.add(3, (), &[1]).unwrap();
        g.add(4, (), &[2]).unwrap();
        g.add(5, (), &[3]).unwrap();
        assert_eq!(g.closure(&[5]).unwrap(), vec![0, 2, 4]);
        assert_eq!(g.closure(&[5, 4]).unwrap(), vec![0, 1, 2, 3, 4]);
        assert_eq!(g.closure(&[9]), Err(GraphError::UnknownTarget(9)));
    }
}
