module example.com/queuer-go-and-python

go 1.25.2

require github.com/siherrmann/queuer v1.72.0
