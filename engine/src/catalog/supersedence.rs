//! `supersededBy`: the transitive closure of the catalog's `supersedes`
//! edges, reversed. Cycles are reported, never followed forever.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

/// A patch can be replaced by at most this many others before the closure
/// is cut (and reported): a hostile feed cannot make it quadratic.
pub const MAX_SUPERSEDING: usize = 1_000;

#[derive(Debug, Default, PartialEq, Eq)]
pub struct Supersedence {
    /// Patch id → every patch that replaces it, directly or transitively,
    /// sorted.
    pub superseded_by: BTreeMap<String, Vec<String>>,
    /// Each cycle once, as the ids along it (first repeated at the end).
    pub cycles: Vec<Vec<String>>,
    /// Patches whose closure was cut at [`MAX_SUPERSEDING`].
    pub truncated: Vec<String>,
}

/// `edges`: each patch id and the ids it supersedes.
pub fn compute<'a, I>(edges: I) -> Supersedence
where
    I: IntoIterator<Item = (&'a str, &'a [String])>,
{
    let mut replaced_by: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    let mut supersedes: BTreeMap<&str, &[String]> = BTreeMap::new();
    for (id, list) in edges {
        supersedes.insert(id, list);
        for old in list {
            replaced_by.entry(old.as_str()).or_default().insert(id);
        }
    }
    let mut result = Supersedence::default();
    for (&id, _) in replaced_by.iter() {
        let mut seen: BTreeSet<&str> = BTreeSet::new();
        let mut queue: VecDeque<&str> = replaced_by[id].iter().copied().collect();
        while let Some(next) = queue.pop_front() {
            if next == id || !seen.insert(next) {
                continue;
            }
            if seen.len() >= MAX_SUPERSEDING {
                result.truncated.push(id.to_owned());
                break;
            }
            if let Some(further) = replaced_by.get(next) {
                queue.extend(further.iter().copied());
            }
        }
        result.superseded_by.insert(id.to_owned(), seen.into_iter().map(str::to_owned).collect());
    }
    result.cycles = find_cycles(&supersedes);
    result
}

/// Cycles in the `supersedes` graph, each reported once, starting at its
/// smallest id.
fn find_cycles(supersedes: &BTreeMap<&str, &[String]>) -> Vec<Vec<String>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        Active,
        Done,
    }
    let mut marks: BTreeMap<&str, Mark> = BTreeMap::new();
    let mut cycles = BTreeSet::new();
    for &start in supersedes.keys() {
        if marks.contains_key(start) {
            continue;
        }
        // Iterative DFS: (node, index of the next edge to follow).
        let mut stack: Vec<(&str, usize)> = vec![(start, 0)];
        marks.insert(start, Mark::Active);
        while let Some((node, edge)) = stack.last().copied() {
            let next = supersedes.get(node).and_then(|list| list.get(edge));
            match next {
                None => {
                    marks.insert(node, Mark::Done);
                    stack.pop();
                }
                Some(target) => {
                    stack.last_mut().expect("not empty").1 += 1;
                    let target = target.as_str();
                    match marks.get(target) {
                        Some(Mark::Active) => {
                            let from =
                                stack.iter().position(|(n, _)| *n == target).expect("active nodes are on the stack");
                            let mut cycle: Vec<String> = stack[from..].iter().map(|(n, _)| (*n).to_owned()).collect();
                            let smallest = (0..cycle.len()).min_by_key(|i| &cycle[*i]).expect("not empty");
                            cycle.rotate_left(smallest);
                            cycle.push(cycle[0].clone());
                            cycles.insert(cycle);
                        }
                        Some(Mark::Done) => {}
                        None if supersedes.contains_key(target) => {
                            marks.insert(target, Mark::Active);
                            stack.push((target, 0));
                        }
                        None => {}
                    }
                }
            }
        }
    }
    cycles.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn edges(list: &[(&str, &[&str])]) -> Vec<(String, Vec<String>)> {
        list.iter().map(|(id, s)| (id.to_string(), s.iter().map(|x| x.to_string()).collect())).collect()
    }

    fn run(list: &[(&str, &[&str])]) -> Supersedence {
        let owned = edges(list);
        compute(owned.iter().map(|(id, s)| (id.as_str(), s.as_slice())))
    }

    #[test]
    fn closes_transitively() {
        let result = run(&[("C", &["B"]), ("B", &["A"]), ("A", &[]), ("D", &["A"])]);
        assert_eq!(result.superseded_by["A"], ["B", "C", "D"]);
        assert_eq!(result.superseded_by["B"], ["C"]);
        assert!(!result.superseded_by.contains_key("C"));
        assert!(result.cycles.is_empty());
    }

    #[test]
    fn follows_through_patches_missing_from_the_catalog() {
        // X is not in the catalog, but B supersedes it and it supersedes nothing known.
        let result = run(&[("B", &["X"])]);
        assert_eq!(result.superseded_by["X"], ["B"]);
    }

    #[test]
    fn reports_cycles_once_and_terminates() {
        let result = run(&[("A", &["B"]), ("B", &["C"]), ("C", &["A"]), ("D", &["D"])]);
        assert_eq!(result.cycles, vec![vec!["A", "B", "C", "A"], vec!["D", "D"]]);
        assert_eq!(result.superseded_by["A"], ["B", "C"]);
        assert_eq!(result.superseded_by["D"], Vec::<String>::new());
    }

    #[test]
    fn a_long_chain_is_cut_and_reported() {
        let ids: Vec<String> = (0..MAX_SUPERSEDING + 10).map(|i| format!("P{i:05}")).collect();
        let list: Vec<(String, Vec<String>)> = ids.windows(2).map(|w| (w[1].clone(), vec![w[0].clone()])).collect();
        let result = compute(list.iter().map(|(id, s)| (id.as_str(), s.as_slice())));
        assert!(result.truncated.contains(&ids[0]));
        assert_eq!(result.superseded_by[&ids[0]].len(), MAX_SUPERSEDING);
    }
}
