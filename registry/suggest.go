package registry

// nearest is the name of have closest to want by edit distance, if one is
// close enough to be a likely misspelling (at most a third of want's length
// away, and at most 3 edits), else "".
func nearest(want string, have []string) string {
	best, bestD := "", min(3, max(1, len(want)/3))+1
	for _, h := range have {
		if d := editDistance(want, h); d < bestD && h != want {
			best, bestD = h, d
		}
	}
	return best
}

// editDistance is the Levenshtein distance of a and b, in bytes.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
