package actorstest

import "math/rand/v2"

// Topology is who bootstraps to whom in a cluster: node j keeps connections
// to the nodes Boot[j], all with smaller indices, so nodes can start in
// order. Neighbours is the same graph, undirected.
type Topology struct {
	Boot       [][]int
	Neighbours []map[int]bool
}

// RandomTopology is a random connected graph of size nodes, the same for
// the same seed: node j > 0 bootstraps to one random earlier node, which
// makes a tree, and then extra edges are added, each from some j to a
// random i < j.
func RandomTopology(size, extra int, seed uint64) Topology {
	rng := rand.New(rand.NewPCG(seed, 1))
	t := Topology{Boot: make([][]int, size), Neighbours: make([]map[int]bool, size)}
	for i := range t.Neighbours {
		t.Neighbours[i] = map[int]bool{}
	}
	link := func(i, j int) bool {
		if i == j || t.Neighbours[i][j] {
			return false
		}
		t.Boot[j] = append(t.Boot[j], i)
		t.Neighbours[i][j], t.Neighbours[j][i] = true, true
		return true
	}
	for j := 1; j < size; j++ {
		link(rng.IntN(j), j)
	}
	// A complete graph has no more edges to add.
	extra = min(extra, size*(size-1)/2-(size-1))
	for added := 0; added < extra; {
		j := 1 + rng.IntN(size-1)
		if link(rng.IntN(j), j) {
			added++
		}
	}
	return t
}

// Size is the number of nodes.
func (t Topology) Size() int { return len(t.Neighbours) }

// Depth is the largest hop count from start to any node of graph (its
// eccentricity), or len(graph) when some node cannot be reached.
func Depth(graph []map[int]bool, start int) int {
	dist := map[int]int{start: 0}
	queue, depth := []int{start}, 0
	for len(queue) > 0 {
		i := queue[0]
		queue = queue[1:]
		for k := range graph[i] {
			if _, ok := dist[k]; !ok {
				dist[k] = dist[i] + 1
				depth = max(depth, dist[k])
				queue = append(queue, k)
			}
		}
	}
	if len(dist) != len(graph) {
		return len(graph) // not connected: deeper than anything
	}
	return depth
}

// Diameter is the largest Depth over every start node.
func Diameter(graph []map[int]bool) int {
	d := 0
	for i := range graph {
		d = max(d, Depth(graph, i))
	}
	return d
}
