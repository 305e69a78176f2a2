"""Counting what a stackproof run has in an AWS endpoint (moto's server in the
tests), independently of the provider's own discovery: plain boto3 clients,
every resource type listed on its own, by tag and by name."""

from __future__ import annotations

from collections import Counter

import boto3

TAG_RUN = "stackproof:run-id"
TAG_MANAGED = "stackproof:managed"
KINDS = ("vpcs", "subnets", "internet_gateways", "route_tables", "network_interfaces", "security_groups",
         "load_balancers", "iam_roles", "attached_policies", "inline_policies", "eks_clusters", "nodegroups",
         "s3_buckets")


class Inventory:
    def __init__(self, endpoint: str, region: str):
        kw = {"endpoint_url": endpoint, "region_name": region}
        self.ec2 = boto3.client("ec2", **kw)
        self.iam = boto3.client("iam", **kw)
        self.eks = boto3.client("eks", **kw)
        self.s3 = boto3.client("s3", **kw)
        self.elbv2 = boto3.client("elbv2", **kw)
        self.elb = boto3.client("elb", **kw)
        self.sts = boto3.client("sts", **kw)

    def vpc_ids(self, run_id: str) -> list[str]:
        return [v["VpcId"] for v in self.ec2.describe_vpcs(
            Filters=[{"Name": f"tag:{TAG_RUN}", "Values": [run_id]}])["Vpcs"]]

    def count(self, run_id: str, vpc_ids: list[str] | tuple = ()) -> Counter:
        """Resources of ``run_id``: tagged with it, named after it, or inside one of its
        VPCs (``vpc_ids`` remembers VPCs that may be gone by now)."""
        by_tag = [{"Name": f"tag:{TAG_RUN}", "Values": [run_id]}]
        vpcs = sorted(set(vpc_ids) | set(self.vpc_ids(run_id)))
        in_vpc = [{"Name": "vpc-id", "Values": vpcs}]
        c: Counter = Counter({k: 0 for k in KINDS})
        c["vpcs"] = len(self.vpc_ids(run_id))

        def ids(method, key, id_key, filters_list):
            out = set()
            for f in filters_list:
                for item in getattr(self.ec2, method)(Filters=f)[key]:
                    out.add(item[id_key])
            return out

        with_vpc = [by_tag] + ([in_vpc] if vpcs else [])
        c["subnets"] = len(ids("describe_subnets", "Subnets", "SubnetId", with_vpc))
        c["internet_gateways"] = len(ids("describe_internet_gateways", "InternetGateways", "InternetGatewayId",
                                         [by_tag] + ([[{"Name": "attachment.vpc-id", "Values": vpcs}]] if vpcs
                                                     else [])))
        rts = set()
        for f in with_vpc:
            for rt in self.ec2.describe_route_tables(Filters=f)["RouteTables"]:
                if not any(a.get("Main") for a in rt.get("Associations", [])):
                    rts.add(rt["RouteTableId"])
        c["route_tables"] = len(rts)
        if vpcs:
            c["network_interfaces"] = len(self.ec2.describe_network_interfaces(Filters=in_vpc)["NetworkInterfaces"])
            c["security_groups"] = sum(1 for g in self.ec2.describe_security_groups(Filters=in_vpc)["SecurityGroups"]
                                       if g["GroupName"] != "default")
            c["load_balancers"] = (
                sum(1 for lb in self.elbv2.describe_load_balancers()["LoadBalancers"] if lb.get("VpcId") in vpcs)
                + sum(1 for lb in self.elb.describe_load_balancers()["LoadBalancerDescriptions"]
                      if lb.get("VPCId") in vpcs))
        roles = []
        for role in self.iam.list_roles()["Roles"]:
            tags = {t["Key"]: t["Value"] for t in self.iam.list_role_tags(RoleName=role["RoleName"])["Tags"]}
            if tags.get(TAG_RUN) == run_id or role["RoleName"].startswith(f"stackproof-{run_id}-"):
                roles.append(role["RoleName"])
        c["iam_roles"] = len(roles)
        for r in roles:
            c["attached_policies"] += len(self.iam.list_attached_role_policies(RoleName=r)["AttachedPolicies"])
            c["inline_policies"] += len(self.iam.list_role_policies(RoleName=r)["PolicyNames"])
        for name in self.eks.list_clusters()["clusters"]:
            cl = self.eks.describe_cluster(name=name)["cluster"]
            if (cl.get("tags") or {}).get(TAG_RUN) == run_id or name == f"stackproof-{run_id}":
                c["eks_clusters"] += 1
                c["nodegroups"] += len(self.eks.list_nodegroups(clusterName=name)["nodegroups"])
        c["s3_buckets"] = len(self.bucket_names(run_id))
        return c

    def bucket_names(self, run_id: str) -> list[str]:
        """Every bucket of ``run_id`` (one per store, and any other): named after it
        (``stackproof-<run id>-...``, tagged or not) or tagged with it."""
        out = []
        for b in self.s3.list_buckets()["Buckets"]:
            if b["Name"].startswith(f"stackproof-{run_id}-"):
                out.append(b["Name"])
                continue
            try:
                tags = {t["Key"]: t["Value"] for t in self.s3.get_bucket_tagging(Bucket=b["Name"])["TagSet"]}
            except self.s3.exceptions.ClientError:
                tags = {}
            if tags.get(TAG_RUN) == run_id:
                out.append(b["Name"])
        return sorted(out)

    def multipart_uploads(self, bucket: str) -> list[dict]:
        """Unfinished multipart uploads of ``bucket`` (none when the bucket is gone)."""
        try:
            return self.s3.list_multipart_uploads(Bucket=bucket).get("Uploads", [])
        except self.s3.exceptions.NoSuchBucket:
            return []

    def everything_stackproof(self) -> Counter:
        """Anything in the endpoint tagged or named by stackproof, whatever the run."""
        c: Counter = Counter()
        managed = [{"Name": f"tag:{TAG_MANAGED}", "Values": ["true"]}]
        c["vpcs"] = len(self.ec2.describe_vpcs(Filters=managed)["Vpcs"])
        c["subnets"] = len(self.ec2.describe_subnets(Filters=managed)["Subnets"])
        c["internet_gateways"] = len(self.ec2.describe_internet_gateways(Filters=managed)["InternetGateways"])
        c["route_tables"] = len(self.ec2.describe_route_tables(Filters=managed)["RouteTables"])
        c["iam_roles"] = len(self.iam.list_roles(PathPrefix="/stackproof/")["Roles"])
        c["eks_clusters"] = sum(1 for n in self.eks.list_clusters()["clusters"] if n.startswith("stackproof-"))
        c["s3_buckets"] = sum(1 for b in self.s3.list_buckets()["Buckets"] if b["Name"].startswith("stackproof-"))
        return +c
