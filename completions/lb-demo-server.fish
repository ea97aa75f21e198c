complete -c lb-demo-server -l name -d 'Name shown in `Hello from NAME` and the `X-Backend` header [default: server-PORT]' -r
complete -c lb-demo-server -l bind -d 'Address to listen on' -r
complete -c lb-demo-server -l echo -d 'Echo raw TCP bytes instead of answering HTTP'
complete -c lb-demo-server -l proxy-protocol -d 'Expect a PROXY protocol header (version 1 or 2) at the start of every connection, as a backend behind `"proxy_protocol"` does; connections without one are closed'
complete -c lb-demo-server -s h -l help -d 'Print help (see more with \'--help\')'
complete -c lb-demo-server -s V -l version -d 'Print version'
