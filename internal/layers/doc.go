// Package layers holds the test that keeps the packages' imports in the
// order the README's picture (Layout) draws: run go test ./internal/layers.
package layers
