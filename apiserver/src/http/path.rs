//! Empty path segments, read the way ARM reads them: not at all.
//!
//! ARM's generic-resource route puts a parent path between a namespace and a type, and clients leave
//! it empty: `az container create --file` and `az container export` send
//! `…/providers/Microsoft.ContainerInstance//containerGroups/{name}`. A client whose endpoint ends in a
//! `/` sends `//subscriptions/…`. ARM answers both as if the empty segments were not there.

/// `path` with every empty segment removed (runs of `/` collapsed, a trailing `/` dropped, the root
/// kept as `/`); `None` if it has none, so the common case allocates nothing.
pub(super) fn collapse_empty_segments(path: &str) -> Option<String> {
    let has_empty = path.contains("//") || (path.len() > 1 && path.ends_with('/'));
    if !has_empty {
        return None;
    }
    let mut out = String::with_capacity(path.len());
    for segment in path.split('/').filter(|s| !s.is_empty()) {
        out.push('/');
        out.push_str(segment);
    }
    if out.is_empty() {
        out.push('/');
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::collapse_empty_segments;

    #[test]
    fn the_generic_resource_route_and_a_doubled_leading_slash_collapse() {
        assert_eq!(
            collapse_empty_segments(
                "/subscriptions/S/resourcegroups/rg/providers/Microsoft.ContainerInstance//containerGroups/web"
            )
            .as_deref(),
            Some(
                "/subscriptions/S/resourcegroups/rg/providers/Microsoft.ContainerInstance/containerGroups/web"
            )
        );
        assert_eq!(
            collapse_empty_segments("//subscriptions/S").as_deref(),
            Some("/subscriptions/S")
        );
        assert_eq!(
            collapse_empty_segments("/subscriptions/S/").as_deref(),
            Some("/subscriptions/S")
        );
        assert_eq!(collapse_empty_segments("///").as_deref(), Some("/"));
        assert_eq!(collapse_empty_segments("/"), None);
        assert_eq!(collapse_empty_segments("/subscriptions/S"), None);
        // An escaped slash is part of its segment, not a separator.
        assert_eq!(collapse_empty_segments("/a%2F%2Fb"), None);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2048))]

        /// Whatever the segments, the result keeps the non-empty ones in order, has no empty segment,
        /// and collapsing again changes nothing.
        #[test]
        fn non_empty_segments_are_kept_in_order(segments in prop::collection::vec("[a-zA-Z0-9.%_-]{0,4}", 0..12)) {
            let path = format!("/{}", segments.join("/"));
            let kept: Vec<&str> = segments.iter().map(String::as_str).filter(|s| !s.is_empty()).collect();
            let expected = format!("/{}", kept.join("/"));
            match collapse_empty_segments(&path) {
                Some(collapsed) => {
                    prop_assert_eq!(&collapsed, &expected);
                    prop_assert!(!collapsed.contains("//"));
                    prop_assert!(collapsed == "/" || !collapsed.ends_with('/'));
                    prop_assert_eq!(collapse_empty_segments(&collapsed), None);
                }
                None => prop_assert_eq!(&path, &expected),
            }
        }
    }
}
