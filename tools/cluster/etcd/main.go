// Command etcd is etcd's own server entry point: the etcd repository's root module, which holds
// its main package, carries replace directives and cannot be built as a dependency.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
