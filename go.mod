module github.com/meshcert/meshcert-exporter

go 1.26.8
