module fluxlora.dev/tools/pause

go 1.26.8
