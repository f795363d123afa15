-- Issue 10: a DNS resource's address families (Firezone's ip_stack). The client
-- answers A and AAAA queries for the resource's names only for these families.
ALTER TABLE resources
    ADD COLUMN ip_stack text NOT NULL DEFAULT 'dual'
        CHECK (ip_stack IN ('dual', 'ipv4_only', 'ipv6_only'));
